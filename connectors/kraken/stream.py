"""Kraken WebSocket v2 market-data adapter: `ticker` (BBO trigger) or `book` (depth) with app-level ping."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson

from connectors.base import Parser, VenueAdapter
from connectors.kraken.book import SUBSCRIPTION_DEPTHS, BookParser, subscription_depth
from connectors.kraken.facts import FACTS
from connectors.kraken.parse import TickerParser
from connectors.symbols import split_symbol

_PING: str = orjson.dumps({"method": "ping"}).decode()


class KrakenAdapter(VenueAdapter):
    """Subscribe every pair to `ticker` with `event_trigger: "bbo"`, or to `book` when `depth` is set.

    Canonical `BTC-USD` is v2's `BTC/USD`; Kraken v2 rejects the REST-era name
    `XBT`, so a symbol using it is refused here. A `book` subscription asks for
    the smallest depth Kraken offers (10, 25, 100, 500, 1000) that holds `depth`;
    a book that fails its checksum is resynced by unsubscribing and resubscribing
    its pair, which brings a new snapshot.
    """

    venue: ClassVar[str] = "kraken"
    default_ws_url: ClassVar[str] = FACTS.ws_url
    max_depth: ClassVar[int | None] = SUBSCRIPTION_DEPTHS[-1]
    # Kraken closes a connection after about a minute without traffic.
    keepalive_interval_s: ClassVar[float | None] = 20.0

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
        pairs: dict[str, str] = {}
        for symbol in self.symbols:
            base, quote = split_symbol(symbol)
            if "XBT" in (base, quote):
                raise ValueError(
                    f"kraken: WebSocket v2 names bitcoin BTC, not XBT: use {symbol.replace('XBT', 'BTC')!r}"
                )
            pairs[f"{base}/{quote}"] = symbol
        self._pairs = pairs
        self._subscribed = None if self.depth is None else subscription_depth(self.depth)

    def connect_url(self) -> str:
        """Return the v2 public endpoint itself."""
        return self.ws_url

    def subscribe_messages(self) -> list[str]:
        """Return one subscribe request for every configured pair."""
        return [self._request("subscribe", list(self._pairs), snapshot=True)]

    def keepalive_message(self) -> str | None:
        """Return the app-level ping; Kraken answers `{"method": "pong", ...}`."""
        return _PING

    def new_parser(self) -> Parser:
        """Return a ticker parser, or a book parser whose books all start empty."""
        if self.depth is None:
            return TickerParser(self._pairs)
        return BookParser(self._pairs, self.depth)

    def resync_messages(self, symbol: str) -> list[str] | None:
        """Return book unsubscribe + subscribe for `symbol`'s pair (a new snapshot); nothing for ticker."""
        if self.depth is None:
            return []  # each ticker is whole
        pair = [pair for pair, canonical in self._pairs.items() if canonical == symbol]
        return [
            self._request("unsubscribe", pair, snapshot=None),
            self._request("subscribe", pair, snapshot=True),
        ]

    def _request(self, method: str, pairs: list[str], *, snapshot: bool | None) -> str:
        params: dict[str, Any] = {
            "channel": "ticker" if self._subscribed is None else "book",
            "symbol": pairs,
        }
        if self._subscribed is None:
            params["event_trigger"] = "bbo"
        else:
            params["depth"] = self._subscribed
        if snapshot is not None:
            params["snapshot"] = snapshot
        return orjson.dumps({"method": method, "params": params}).decode()
