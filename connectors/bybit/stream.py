"""Bybit v5 spot market-data adapter: `orderbook.1.<SYM>` on the public spot WebSocket."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import orjson

from connectors.base import Parser, VenueAdapter
from connectors.bybit.parse import OrderbookParser
from connectors.symbols import concatenated_map

_KEEPALIVE: str = orjson.dumps({"req_id": "keepalive", "op": "ping"}).decode()


class BybitAdapter(VenueAdapter):
    """Subscribe to the level-1 book of every configured symbol; ping every 20 s."""

    venue: ClassVar[str] = "bybit"
    default_ws_url: ClassVar[str] = "wss://stream.bybit.com/v5/public/spot"
    # Bybit cuts a connection after 10 min without traffic and recommends a ping every 20 s.
    keepalive_interval_s: ClassVar[float | None] = 20.0
    max_connection_age_s: ClassVar[float | None] = None
    args_per_message: ClassVar[int] = 10
    max_args_chars: ClassVar[int] = 21_000

    def __init__(self, symbols: Sequence[str], *, ws_url: str | None = None) -> None:
        """Configure the canonical symbols to stream; raise ValueError on bad input."""
        super().__init__(symbols, ws_url=ws_url)
        self._venue_symbols = concatenated_map(self.symbols)
        self._topics = [f"orderbook.1.{venue_symbol}" for venue_symbol in self._venue_symbols]
        chars = sum(len(topic) for topic in self._topics)
        if chars > self.max_args_chars:
            raise ValueError(
                f"bybit: subscription args total {chars} chars, over the {self.max_args_chars} per connection"
            )

    def connect_url(self) -> str:
        """Return the spot public endpoint itself."""
        return self.ws_url

    def subscribe_messages(self) -> list[str]:
        """Return subscribe requests with at most 10 topics each (the spot limit)."""
        step = self.args_per_message
        return [
            orjson.dumps(
                {
                    "req_id": f"subscribe-{number}",
                    "op": "subscribe",
                    "args": self._topics[start : start + step],
                }
            ).decode()
            for number, start in enumerate(range(0, len(self._topics), step), start=1)
        ]

    def keepalive_message(self) -> str | None:
        """Return the JSON ping Bybit expects every 20 s."""
        return _KEEPALIVE

    def new_parser(self) -> Parser:
        """Return a parser with empty books, as a new connection starts from snapshots."""
        return OrderbookParser(self._venue_symbols)
