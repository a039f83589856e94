"""Binance Spot market data: `<symbol>@bookTicker` or `<symbol>@depth@100ms` books on one combined stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import orjson

from connectors.base import Parser, VenueAdapter
from connectors.binance.depth import MAX_DEPTH, DepthParser, DepthSnapshots
from connectors.binance.facts import FACTS
from connectors.binance.parse import BookTickerParser
from connectors.symbols import concatenated_map, to_concatenated


class BinanceAdapter(VenueAdapter):
    """Subscribe to every configured symbol's bookTicker (top of book) or diff depth stream (`depth` set).

    With `depth`, each symbol's book starts from a REST `/api/v3/depth` snapshot
    (`fetch_snapshot`) aligned with the buffered diffs; a gap resyncs it the same way.
    """

    venue: ClassVar[str] = "binance"
    default_ws_url: ClassVar[str] = FACTS.ws_url
    default_rest_url: ClassVar[str | None] = FACTS.rest_url
    max_depth: ClassVar[int | None] = MAX_DEPTH
    # The server pings every 20 s and aiohttp answers; no app-level ping exists.
    keepalive_interval_s: ClassVar[float | None] = None
    # Binance cuts every connection after 24 h; leave on our own terms before that.
    max_connection_age_s: ClassVar[float | None] = 23.5 * 3600
    # At most 5 incoming messages/s per connection (pongs included), else disconnect and ban.
    subscribe_interval_s: ClassVar[float] = 0.25
    streams_per_message: ClassVar[int] = 200
    max_streams: ClassVar[int] = 1024

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
        if len(self.symbols) > self.max_streams:
            raise ValueError(
                f"binance: {len(self.symbols)} symbols exceed the {self.max_streams} streams per connection"
            )
        self._venue_symbols = concatenated_map(self.symbols)
        self._snapshots: DepthSnapshots | None = None
        if self.depth is not None:
            assert self.rest_url is not None  # the class has a default REST URL
            self._snapshots = DepthSnapshots(self.rest_url, self.depth)

    def connect_url(self) -> str:
        """Return the combined-stream URL, whose frames name their stream."""
        return f"{self.ws_url}/stream"

    def subscribe_messages(self) -> list[str]:
        """Return SUBSCRIBE requests for every symbol's stream, at most 200 streams each."""
        channel = "bookTicker" if self.depth is None else "depth@100ms"
        streams = [f"{venue_symbol.lower()}@{channel}" for venue_symbol in self._venue_symbols]
        step = self.streams_per_message
        return [
            orjson.dumps(
                {"method": "SUBSCRIBE", "params": streams[start : start + step], "id": number}
            ).decode()
            for number, start in enumerate(range(0, len(streams), step), start=1)
        ]

    def new_parser(self) -> Parser:
        """Return a bookTicker parser, or a depth parser whose books all start unsynced."""
        if self.depth is None:
            return BookTickerParser(self._venue_symbols)
        return DepthParser(self._venue_symbols, self.depth)

    def resync_messages(self, symbol: str) -> list[str] | None:
        """Return no frames for bookTicker (each is whole: a crossed one needs no resync); None with depth."""
        return [] if self.depth is None else None

    async def fetch_snapshot(self, symbol: str) -> bytes:
        """Return the `/api/v3/depth` body of canonical `symbol`; raise VenueError when it cannot be had."""
        if self._snapshots is None:
            raise NotImplementedError("binance: REST snapshots serve depth books; this adapter has no depth")
        return await self._snapshots.fetch(to_concatenated(symbol))

    async def close(self) -> None:
        """Close the REST session, if one is open."""
        if self._snapshots is not None:
            await self._snapshots.close()
