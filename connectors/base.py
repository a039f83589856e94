"""The venue seam: one `VenueAdapter` subclass and one pure `Parser` per exchange.

An adapter says where to connect, what to send and how to parse; everything
else about a connection (reconnects, keepalive timing, watchdog, metrics, logs)
lives once in `connectors.stream.StreamRunner`. The helpers at the bottom turn
venue JSON into checked values and raise only `ParseError`.

Depth feeds (`depth` set) keep a local book per symbol and raise
`connectors.book.BookInvalid` when its integrity rule fails. The runner then
resyncs the symbol, in the first way the venue offers:

- a `SnapshotParser` asks for REST snapshots (`snapshot_requests`); the runner
  fetches each with `VenueAdapter.fetch_snapshot` and feeds it to
  `load_snapshot`, while frames keep being read (the parser buffers meanwhile);
- `VenueAdapter.resync_messages(symbol)` returns frames that resubscribe the
  symbol on the open connection (the venue answers with a new snapshot);
- otherwise the runner reopens the whole connection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import orjson

from connectors.errors import ParseError
from connectors.symbols import validate_symbol
from connectors.types import Level, Quote

_SAMPLE_CHARS = 200
_T = TypeVar("_T")


class Parser(Protocol):
    """Turn one venue frame into quotes; one instance per connection."""

    def parse(self, frame: str | bytes, received_ns: int) -> list[Quote]:
        """Return the quotes in `frame`; raise ParseError or ReconnectRequested, never do I/O.

        Control frames (subscribe acks, pongs, heartbeats) return []. The parser may
        keep per-connection state (a level-1 book), which a new connection starts afresh.
        """
        ...


@runtime_checkable
class SnapshotParser(Parser, Protocol):
    """A depth parser whose books start (and restart) from a REST snapshot the runner fetches."""

    def snapshot_requests(self) -> list[str]:
        """Return, once each, the canonical symbols whose book now waits for a REST snapshot."""
        ...

    def load_snapshot(self, symbol: str, payload: bytes, received_ns: int) -> list[Quote]:
        """Align the REST snapshot `payload` with the buffered updates of `symbol`; return its quote.

        Raise ParseError for a body that is not a snapshot (the symbol asks again),
        `BookInvalid` when the buffered updates do not continue it.
        """
        ...


class VenueAdapter(ABC):
    """Describe one venue's public market-data WebSocket: URL, subscriptions, keepalive, parser."""

    venue: ClassVar[str]
    default_ws_url: ClassVar[str]
    # REST base URL for snapshots; None when the adapter fetches none.
    default_rest_url: ClassVar[str | None] = None
    # Deepest local book the adapter can keep; None when it offers only top of book.
    max_depth: ClassVar[int | None] = None
    # App-level ping period; None when the venue needs none (server pings, aiohttp answers).
    keepalive_interval_s: ClassVar[float | None] = None
    # Reconnect on our own before the venue's forced cut; None when it has none.
    max_connection_age_s: ClassVar[float | None] = None
    # Pause between subscribe messages, to stay inside the venue's incoming-message rate limit.
    subscribe_interval_s: ClassVar[float] = 0.0

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        ws_url: str | None = None,
        rest_url: str | None = None,
        depth: int | None = None,
    ) -> None:
        """Check the canonical symbols, endpoints and depth; raise ValueError on bad input.

        `depth` None streams top of book; an int keeps a local book and serves
        that many levels a side (at most `max_depth`).
        """
        if isinstance(symbols, str):
            raise ValueError(
                f"{self.venue}: symbols must be a sequence of symbols, not the string {symbols!r}"
            )
        checked = tuple(validate_symbol(symbol) for symbol in symbols)
        if not checked:
            raise ValueError(f"{self.venue}: at least one symbol is required")
        if len(set(checked)) != len(checked):
            raise ValueError(f"{self.venue}: duplicate symbols in {list(checked)}")
        url = self.default_ws_url if ws_url is None else ws_url
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"{self.venue}: ws_url must start with ws:// or wss://, got {url!r}")
        rest = self.default_rest_url if rest_url is None else rest_url
        if rest is not None and not rest.startswith(("http://", "https://")):
            raise ValueError(f"{self.venue}: rest_url must start with http:// or https://, got {rest!r}")
        self.symbols: tuple[str, ...] = checked
        self.ws_url: str = url.rstrip("/")
        self.rest_url: str | None = None if rest is None else rest.rstrip("/")
        self.depth: int | None = self._checked_depth(depth)

    def _checked_depth(self, depth: int | None) -> int | None:
        if depth is None:
            return None
        if self.max_depth is None:
            raise ValueError(f"{self.venue}: this adapter streams top of book only; depth must be unset")
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= self.max_depth:
            raise ValueError(f"{self.venue}: depth must be an integer in 1..{self.max_depth}, got {depth!r}")
        return depth

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(symbols={list(self.symbols)!r}, ws_url={self.ws_url!r}, "
            f"rest_url={self.rest_url!r}, depth={self.depth!r})"
        )

    @abstractmethod
    def connect_url(self) -> str:
        """Return the full URL to open."""

    @abstractmethod
    def subscribe_messages(self) -> list[str]:
        """Return the JSON text frames to send right after connecting."""

    def keepalive_message(self) -> str | None:
        """Return the app-level ping frame, or None when the venue needs none."""
        return None

    @abstractmethod
    def new_parser(self) -> Parser:
        """Return a fresh parser for one new connection."""

    def resync_messages(self, symbol: str) -> list[str] | None:
        """Return the frames that resync `symbol`'s book on the open connection; None if the venue has none.

        Called after the parser raised BookInvalid for `symbol`. With None and a
        parser that is no `SnapshotParser`, the runner reopens the connection.
        """
        return None

    async def fetch_snapshot(self, symbol: str) -> bytes:
        """Return the body of a REST book snapshot of `symbol`; raise VenueError when it cannot be had."""
        raise NotImplementedError(f"{self.venue}: this adapter fetches no REST snapshot")

    async def close(self) -> None:
        """Release what the adapter holds open (a REST session); idempotent, and it may be used again."""
        # Top-of-book adapters hold nothing between connections.
        return


def frame_sample(frame: str | bytes) -> str:
    """Return the start of a frame as text, short enough for a log line or an error message."""
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    return text if len(text) <= _SAMPLE_CHARS else text[:_SAMPLE_CHARS] + "..."


def decode_object(frame: str | bytes) -> dict[str, Any]:
    """Decode a frame that must hold one JSON object."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"frame is not valid JSON ({exc}): {frame_sample(frame)!r}") from exc
    if not isinstance(message, dict):
        raise ParseError(f"frame is not a JSON object: {frame_sample(frame)!r}")
    return message


def field(obj: dict[str, Any], key: str, kind: type[_T], where: str) -> _T:
    """Return `obj[key]` if present and of type `kind` (bool never counts as int)."""
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ParseError(f"{where}: field {key!r} must be {kind.__name__}, got {value!r}")
    return value


def decimal_of(value: object, name: str) -> Decimal:
    """Return the finite, non-negative Decimal that the venue's decimal string spells."""
    if not isinstance(value, str):
        raise ParseError(f"{name} must be a decimal string, got {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise ParseError(f"{name} is not a decimal: {value!r}") from exc
    if not number.is_finite() or number < 0:
        raise ParseError(f"{name} must be finite and not negative, got {value!r}")
    return number


def signed_decimal_of(value: object, name: str) -> Decimal:
    """Return the finite Decimal, of either sign, that a venue's decimal string spells (changes, fees)."""
    if not isinstance(value, str):
        raise ParseError(f"{name} must be a decimal string, got {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise ParseError(f"{name} is not a decimal: {value!r}") from exc
    if not number.is_finite():
        raise ParseError(f"{name} must be finite, got {value!r}")
    return number


def price_of(value: object, name: str) -> Decimal:
    """Return a strictly positive price parsed from the venue's decimal string."""
    price = decimal_of(value, name)
    if price == 0:
        raise ParseError(f"{name} must be positive, got {value!r}")
    return price


def levels_of(value: object, name: str) -> list[Level]:
    """Return the `[price, size]` decimal-string pairs of a venue's level list (size 0 = delete)."""
    if not isinstance(value, list):
        raise ParseError(f"{name} must be a list of [price, size] levels, got {value!r}")
    levels: list[Level] = []
    for level in value:
        if not isinstance(level, list) or len(level) != 2:
            raise ParseError(f"{name} level must be [price, size], got {level!r}")
        levels.append((price_of(level[0], f"{name} price"), decimal_of(level[1], f"{name} size")))
    return levels
