"""Bybit v5 spot market-data adapter: `orderbook.<depth>.<SYM>` on the public spot WebSocket."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

import orjson

from connectors.base import Parser, VenueAdapter
from connectors.bybit.facts import FACTS
from connectors.bybit.parse import OrderbookParser
from connectors.symbols import concatenated_map, to_concatenated

_KEEPALIVE: str = orjson.dumps({"req_id": "keepalive", "op": "ping"}).decode()
# The spot book depths Bybit publishes.
TOPIC_DEPTHS: Final = (1, 50, 200, 1000)


def topic_depth(depth: int | None) -> int:
    """Return the shallowest published depth holding `depth` levels (level 1 for top of book)."""
    wanted = 1 if depth is None else depth
    for published in TOPIC_DEPTHS:
        if wanted <= published:
            return published
    raise ValueError(f"bybit: depth must be at most {TOPIC_DEPTHS[-1]}, got {depth!r}")


class BybitAdapter(VenueAdapter):
    """Subscribe to each symbol's book (level 1, or the depth that holds `depth`); ping every 20 s.

    A book that fails its `u` continuity (or crosses) is resynced by
    resubscribing its topic: Bybit answers a subscription with a snapshot.
    """

    venue: ClassVar[str] = "bybit"
    default_ws_url: ClassVar[str] = FACTS.ws_url
    max_depth: ClassVar[int | None] = TOPIC_DEPTHS[-1]
    # Bybit cuts a connection after 10 min without traffic and recommends a ping every 20 s.
    keepalive_interval_s: ClassVar[float | None] = 20.0
    max_connection_age_s: ClassVar[float | None] = None
    args_per_message: ClassVar[int] = 10
    max_args_chars: ClassVar[int] = 21_000

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
        self._venue_symbols = concatenated_map(self.symbols)
        self._topic_depth = topic_depth(self.depth)
        self._topics = [self._topic(venue_symbol) for venue_symbol in self._venue_symbols]
        chars = sum(len(topic) for topic in self._topics)
        if chars > self.max_args_chars:
            raise ValueError(
                f"bybit: subscription args total {chars} chars, over the {self.max_args_chars} per connection"
            )

    def _topic(self, venue_symbol: str) -> str:
        return f"orderbook.{self._topic_depth}.{venue_symbol}"

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
        return OrderbookParser(self._venue_symbols, self.depth)

    def resync_messages(self, symbol: str) -> list[str] | None:
        """Return the unsubscribe and subscribe of `symbol`'s topic, which Bybit answers with a snapshot."""
        topic = self._topic(to_concatenated(symbol))
        return [
            orjson.dumps({"req_id": f"resync-{op}", "op": op, "args": [topic]}).decode()
            for op in ("unsubscribe", "subscribe")
        ]
