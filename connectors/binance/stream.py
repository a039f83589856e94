"""Binance Spot market-data adapter: `<symbol>@bookTicker` on one combined stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import orjson

from connectors.base import Parser, VenueAdapter
from connectors.binance.parse import BookTickerParser
from connectors.symbols import concatenated_map


class BinanceAdapter(VenueAdapter):
    """Subscribe to `<symbol>@bookTicker` for every configured symbol on `<ws_url>/stream`."""

    venue: ClassVar[str] = "binance"
    default_ws_url: ClassVar[str] = "wss://stream.binance.com:9443"
    # The server pings every 20 s and websockets answers; no app-level ping exists.
    keepalive_interval_s: ClassVar[float | None] = None
    # Binance cuts every connection after 24 h; leave on our own terms before that.
    max_connection_age_s: ClassVar[float | None] = 23.5 * 3600
    # At most 5 incoming messages/s per connection (pongs included), else disconnect and ban.
    subscribe_interval_s: ClassVar[float] = 0.25
    streams_per_message: ClassVar[int] = 200
    max_streams: ClassVar[int] = 1024

    def __init__(self, symbols: Sequence[str], *, ws_url: str | None = None) -> None:
        """Configure the canonical symbols to stream; raise ValueError on bad input."""
        super().__init__(symbols, ws_url=ws_url)
        if len(self.symbols) > self.max_streams:
            raise ValueError(
                f"binance: {len(self.symbols)} symbols exceed the {self.max_streams} streams per connection"
            )
        self._venue_symbols = concatenated_map(self.symbols)

    def connect_url(self) -> str:
        """Return the combined-stream URL, whose frames name their stream."""
        return f"{self.ws_url}/stream"

    def subscribe_messages(self) -> list[str]:
        """Return SUBSCRIBE requests for every bookTicker stream, at most 200 streams each."""
        streams = [f"{venue_symbol.lower()}@bookTicker" for venue_symbol in self._venue_symbols]
        step = self.streams_per_message
        return [
            orjson.dumps(
                {"method": "SUBSCRIBE", "params": streams[start : start + step], "id": number}
            ).decode()
            for number, start in enumerate(range(0, len(streams), step), start=1)
        ]

    def new_parser(self) -> Parser:
        """Return a bookTicker parser for the configured symbols."""
        return BookTickerParser(self._venue_symbols)
