"""Parse Kraken WebSocket v2 frames: decimal-exact decoding, control messages and the `ticker` BBO.

Kraken v2 sends prices and quantities as JSON numbers at full precision
(`"price": 0.5666`), so frames are decoded with `parse_float=Decimal`: a float
would lose digits, and the book checksum would fail. Shared by `TickerParser`
here and `connectors.kraken.book.BookParser`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from connectors.base import frame_sample
from connectors.book import Reports
from connectors.coinbase.parse import rfc3339_ns
from connectors.errors import ParseError
from connectors.top_guard import TopGuard
from connectors.types import Quote

VENUE: Final = "kraken"
# Channels without market data: the 1/s keepalive once subscribed, and the connection status.
CONTROL_CHANNELS: Final = frozenset({"heartbeat", "status"})
_ACK_METHODS: Final = frozenset({"subscribe", "unsubscribe", "pong"})


def _reject_constant(name: str) -> Any:
    raise ParseError(f"kraken: {name} is not a number a venue may send")


def decode(frame: str | bytes) -> dict[str, Any]:
    """Decode a frame that must hold one JSON object, with every non-integer number as a Decimal."""
    try:
        message = json.loads(frame, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ParseError(f"kraken: frame is not valid JSON ({exc}): {frame_sample(frame)!r}") from exc
    if not isinstance(message, dict):
        raise ParseError(f"kraken: frame is not a JSON object: {frame_sample(frame)!r}")
    return message


def number_of(value: object, name: str) -> Decimal:
    """Return the finite, non-negative Decimal of a decoded JSON number (never a bool or a string)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ParseError(f"{name} must be a JSON number, got {value!r}")
    number = Decimal(value)
    if not number.is_finite() or number < 0:
        raise ParseError(f"{name} must be finite and not negative, got {value!r}")
    return number


def positive_of(value: object, name: str) -> Decimal:
    """Return a strictly positive price from a decoded JSON number."""
    number = number_of(value, name)
    if number == 0:
        raise ParseError(f"{name} must be positive, got {value!r}")
    return number


def control(message: dict[str, Any], frame: str | bytes) -> None:
    """Accept an ack or pong; raise ParseError for a failed request or an unknown message."""
    method = message.get("method")
    if not isinstance(method, str) or method not in _ACK_METHODS:  # a dict or list is unhashable
        raise ParseError(f"kraken: unexpected message without a channel: {frame_sample(frame)!r}")
    if message.get("success") is False:
        raise ParseError(f"kraken: {method} {message.get('symbol', '')!r} failed: {message.get('error')!r}")


def is_data(message: dict[str, Any], frame: str | bytes, channel: str) -> bool:
    """Return True for a message on `channel`, False for an ack, pong, heartbeat or status.

    Raise ParseError for a failed request, an unknown message or another data channel
    (each connection carries one).
    """
    found = message.get("channel")
    if found is None:
        control(message, frame)
        return False
    if not isinstance(found, str):  # a dict or list is unhashable
        raise ParseError(f"kraken: channel is not a string: {frame_sample(frame)!r}")
    if found in CONTROL_CHANNELS:
        return False
    if found != channel:
        raise ParseError(f"kraken: unexpected channel {found!r} on a {channel} connection")
    return True


def items(message: dict[str, Any], channel: str) -> list[dict[str, Any]]:
    """Return the `data` objects of a channel message."""
    data = message.get("data")
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ParseError(f"kraken: {channel} 'data' must be a list of objects, got {data!r}")
    return data


def symbol_of(symbols: Mapping[str, str], item: dict[str, Any], channel: str) -> str:
    """Return the canonical symbol of a configured v2 pair (`BTC/USD` → `BTC-USD`)."""
    pair = item.get("symbol")
    symbol = symbols.get(pair) if isinstance(pair, str) else None
    if symbol is None:
        raise ParseError(f"kraken: {channel} data for unconfigured symbol {pair!r}")
    return symbol


def exchange_ns_of(item: dict[str, Any], where: str) -> int | None:
    """Return the RFC 3339 `timestamp` of a data object in nanoseconds, None when it has none."""
    stamp = item.get("timestamp")
    return None if stamp is None else rfc3339_ns(stamp, f"{where} timestamp")


class TickerParser:
    """Emit the best bid and ask of `ticker` messages, subscribed with `event_trigger: "bbo"`::

        {"channel": "ticker", "type": "update", "data": [{"symbol": "ALGO/USD",
          "bid": 0.10025, "bid_qty": 740.0, "ask": 0.10035, "ask_qty": 740.0, "last": 0.10035,
          ..., "timestamp": "2023-09-25T09:04:31.742648Z"}]}

    With the "bbo" trigger Kraken sends a message on every change of the best
    bid or ask. `exchange_ns` is `timestamp` (None when absent); Kraken sends no
    sequence (`seq` None), so order is judged by `timestamp` alone: a ticker
    stamped earlier than the last one served is dropped. A crossed ticker gives no
    quote, and the first one raises BookInvalid("crossed") so the served quote is
    withdrawn at once (`connectors.top_guard.TopGuard`; both counted in `quote_rejects`).
    Heartbeats, status messages, acks and pongs return [].
    """

    __slots__ = ("_guard", "_reports", "_symbols")

    def __init__(self, symbols: Mapping[str, str]) -> None:
        """Parse for v2 pair → canonical `symbols` (`BTC/USD` → `BTC-USD`)."""
        self._symbols = dict(symbols)
        self._reports = Reports()
        self._guard = TopGuard(VENUE, self._reports.report, ("ticker bid", "ask"))

    def parse(self, frame: str | bytes, received_ns: int) -> list[Quote]:
        """Return a quote per ticker object, [] for control messages."""
        message = decode(frame)
        if not is_data(message, frame, "ticker"):
            return self._reports.deliver([])
        tickers = [self._ticker(item, received_ns) for item in items(message, "ticker")]
        return self._reports.deliver(self._guard.admitted(tickers))

    def _ticker(self, item: dict[str, Any], received_ns: int) -> Quote:
        symbol = symbol_of(self._symbols, item, "ticker")
        where = f"kraken ticker {symbol}"
        return Quote(
            venue=VENUE,
            symbol=symbol,
            bid=positive_of(item.get("bid"), f"{where} bid"),
            bid_qty=number_of(item.get("bid_qty"), f"{where} bid_qty"),
            ask=positive_of(item.get("ask"), f"{where} ask"),
            ask_qty=number_of(item.get("ask_qty"), f"{where} ask_qty"),
            exchange_ns=exchange_ns_of(item, where),
            received_ns=received_ns,
            seq=None,
        )
