"""Coinbase Advanced Trade market-data adapter: `ticker` or `level2`, plus `heartbeats`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

import orjson

from connectors.base import Parser, VenueAdapter
from connectors.coinbase.level2 import Level2Parser
from connectors.coinbase.parse import TickerParser

# Deep enough for any router; level2 itself carries the whole book.
MAX_DEPTH: Final = 1000


class CoinbaseAdapter(VenueAdapter):
    """Subscribe every product to `ticker`, or `level2` when `depth` is set, and to `heartbeats`.

    Canonical symbols are Coinbase product ids as they are (`BTC-USD`). Coinbase's
    `-USDC` products are not separate markets: their market channels return the
    same data as the matching `-USD` product. `BTC-USD` and `BTC-USDC` stay distinct
    symbols here (USD and USDC are different assets elsewhere), but subscribing
    both is redundant. Without `depth`, the quote comes from `ticker`, which moves
    only on trades; configure a depth for a live top of book from `level2`.
    """

    venue: ClassVar[str] = "coinbase"
    default_ws_url: ClassVar[str] = "wss://advanced-trade-ws.coinbase.com"
    max_depth: ClassVar[int | None] = MAX_DEPTH
    # The `heartbeats` channel keeps the connection alive; there is no app-level ping.
    keepalive_interval_s: ClassVar[float | None] = None
    # Unauthenticated clients may send 8 messages/s per IP.
    subscribe_interval_s: ClassVar[float] = 0.2

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        ws_url: str | None = None,
        rest_url: str | None = None,
        depth: int | None = None,
    ) -> None:
        """Configure the canonical symbols to stream; raise ValueError on bad input."""
        super().__init__(symbols, ws_url=ws_url, rest_url=rest_url, depth=depth)
        self._products = {symbol: symbol for symbol in self.symbols}
        self._channel = "ticker" if self.depth is None else "level2"

    def connect_url(self) -> str:
        """Return the market-data endpoint itself."""
        return self.ws_url

    def subscribe_messages(self) -> list[str]:
        """Return the data channel's subscribe, then `heartbeats` (one channel per message; sent at once)."""
        return [
            self._message("subscribe", self._channel, list(self._products)),
            orjson.dumps({"type": "subscribe", "channel": "heartbeats"}).decode(),
        ]

    def new_parser(self) -> Parser:
        """Return a ticker parser, or a level2 parser whose books all start empty."""
        if self.depth is None:
            return TickerParser(self._products)
        return Level2Parser(self._products, self.depth)

    def resync_messages(self, symbol: str) -> list[str] | None:
        """Return level2 unsubscribe + subscribe for `symbol` (a new snapshot); nothing for ticker."""
        if self.depth is None:
            return []  # each ticker is whole
        products = [symbol]
        return [
            self._message("unsubscribe", "level2", products),
            self._message("subscribe", "level2", products),
        ]

    @staticmethod
    def _message(kind: str, channel: str, products: list[str]) -> str:
        return orjson.dumps({"type": kind, "product_ids": products, "channel": channel}).decode()
