"""The venue seam: one `VenueAdapter` subclass and one pure `Parser` per exchange.

An adapter says where to connect, what to send and how to parse; everything
else about a connection (reconnects, keepalive timing, watchdog, metrics, logs)
lives once in `connectors.stream.StreamRunner`. The helpers at the bottom turn
venue JSON into checked values and raise only `ParseError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Protocol, TypeVar

import orjson

from connectors.errors import ParseError
from connectors.symbols import validate_symbol
from connectors.types import Quote

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


class VenueAdapter(ABC):
    """Describe one venue's public market-data WebSocket: URL, subscriptions, keepalive, parser."""

    venue: ClassVar[str]
    default_ws_url: ClassVar[str]
    # App-level ping period; None when the venue needs none (server pings, websockets answers).
    keepalive_interval_s: ClassVar[float | None] = None
    # Reconnect on our own before the venue's forced cut; None when it has none.
    max_connection_age_s: ClassVar[float | None] = None
    # Pause between subscribe messages, to stay inside the venue's incoming-message rate limit.
    subscribe_interval_s: ClassVar[float] = 0.0

    def __init__(self, symbols: Sequence[str], *, ws_url: str | None = None) -> None:
        """Check the canonical symbols and the endpoint; raise ValueError on bad input."""
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
        self.symbols: tuple[str, ...] = checked
        self.ws_url: str = url.rstrip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(symbols={list(self.symbols)!r}, ws_url={self.ws_url!r})"

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


def price_of(value: object, name: str) -> Decimal:
    """Return a strictly positive price parsed from the venue's decimal string."""
    price = decimal_of(value, name)
    if price == 0:
        raise ParseError(f"{name} must be positive, got {value!r}")
    return price
