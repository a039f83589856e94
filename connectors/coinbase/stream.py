"""Coinbase Advanced Trade market-data adapter: `level2` books, plus `heartbeats`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

import orjson

from connectors.base import Parser, VenueAdapter
from connectors.coinbase.facts import FACTS
from connectors.coinbase.level2 import Level2Parser

# Deep enough for any router; level2 itself carries the whole book.
MAX_DEPTH: Final = 1000


class CoinbaseAdapter(VenueAdapter):
    """Subscribe every product to `level2` and to `heartbeats`; serve the top of book, or `depth` levels.

    Canonical symbols are Coinbase product ids as they are (`BTC-USD`). Coinbase's
    `-USDC` products are not separate markets: their market channels return the
    same data as the matching `-USD` product. `BTC-USD` and `BTC-USDC` stay distinct
    symbols here (USD and USDC are different assets elsewhere), but subscribing
    both is redundant. `level2` is used without `depth` too: the `ticker` channel
    moves only on trades, so its best bid/ask can be minutes old while the book
    moves, whereas the local level2 book gives a quote on every change.
    """

    venue: ClassVar[str] = "coinbase"
    default_ws_url: ClassVar[str] = FACTS.ws_url
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

    def connect_url(self) -> str:
        """Return the market-data endpoint itself."""
        return self.ws_url

    def subscribe_messages(self) -> list[str]:
        """Return the data channel's subscribe, then `heartbeats` (one channel per message; sent at once)."""
        return [
            self._message("subscribe", "level2", list(self._products)),
            orjson.dumps({"type": "subscribe", "channel": "heartbeats"}).decode(),
        ]

    def new_parser(self) -> Parser:
        """Return a level2 parser whose books all start empty (serving the top alone without `depth`)."""
        return Level2Parser(self._products, self.depth)

    def resync_messages(self, symbol: str) -> list[str] | None:
        """Return level2 unsubscribe + subscribe for `symbol`: Coinbase answers with a new snapshot."""
        products = [symbol]
        return [
            self._message("unsubscribe", "level2", products),
            self._message("subscribe", "level2", products),
        ]

    @staticmethod
    def _message(kind: str, channel: str, products: list[str]) -> str:
        return orjson.dumps({"type": kind, "product_ids": products, "channel": channel}).decode()
