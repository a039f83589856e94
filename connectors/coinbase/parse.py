"""Parse Coinbase Advanced Trade market-data frames: the envelope, control channels and `ticker`.

Every message of a connection comes in one envelope whose `sequence_num`
grows by one per message, across channels::

    {"channel": "ticker", "client_id": "", "timestamp": "2023-02-09T20:30:37.167359596Z",
     "sequence_num": 0, "events": [...]}

A jump means messages were dropped; a lower number is an out-of-order message
(ignored). Errors arrive as `{"type": "error", "message": "..."}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from connectors.base import decimal_of, decode_object, field, frame_sample, price_of
from connectors.book import Reports, quote_rejects
from connectors.errors import ParseError
from connectors.top_guard import TopGuard
from connectors.types import Quote

VENUE: Final = "coinbase"
# Channels that carry no market data: subscription confirmations and the keepalive.
CONTROL_CHANNELS: Final = frozenset({"subscriptions", "heartbeats"})

_RFC3339: Final = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339_ns(value: object, name: str) -> int:
    """Return nanoseconds since the Unix epoch of an RFC 3339 time with up to 9 fraction digits."""
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ParseError(f"{name} must be an RFC 3339 time, got {value!r}")
    date, clock, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(f"{date}T{clock}{'+00:00' if zone in 'Zz' else zone}")
    except ValueError as exc:
        raise ParseError(f"{name} is not a valid time: {value!r}") from exc
    # Integer arithmetic throughout: a float timestamp loses the nanoseconds.
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return seconds * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


@dataclass(frozen=True, slots=True)
class Envelope:
    """The checked envelope of one Coinbase message."""

    channel: str
    sequence_num: int
    exchange_ns: int
    events: list[dict[str, Any]]


def decode_envelope(frame: str | bytes) -> Envelope:
    """Return the envelope of `frame`; raise ParseError for an error message or a bad shape."""
    message = decode_object(frame)
    if message.get("type") == "error":
        raise ParseError(f"coinbase: error: {message.get('message')!r} {message.get('reason', '')!r}")
    channel = message.get("channel")
    if not isinstance(channel, str):
        raise ParseError(f"coinbase: frame without a channel: {frame_sample(frame)!r}")
    events = field(message, "events", list, f"coinbase {channel}")
    if not all(isinstance(event, dict) for event in events):
        raise ParseError(f"coinbase: {channel} events must be objects: {frame_sample(frame)!r}")
    return Envelope(
        channel=channel,
        sequence_num=field(message, "sequence_num", int, f"coinbase {channel}"),
        exchange_ns=rfc3339_ns(message.get("timestamp"), f"coinbase {channel} timestamp"),
        events=events,
    )


class SequenceCheck:
    """Follow a connection's `sequence_num`: the next one, a jump (dropped messages) or stale."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        """Start before the connection's first message."""
        self.last: int | None = None

    def check(self, sequence_num: int) -> Literal["next", "jump", "stale"]:
        """Classify `sequence_num` against the last one seen, and remember it unless stale."""
        last = self.last
        if last is not None and sequence_num <= last:
            return "stale"
        self.last = sequence_num
        return "next" if last is None or sequence_num == last + 1 else "jump"


def product_symbol(products: Mapping[str, str], value: object, where: str) -> str:
    """Return the canonical symbol of a configured `product_id`."""
    if not isinstance(value, str):
        raise ParseError(f"coinbase: {where} product_id must be a string, got {value!r}")
    symbol = products.get(value)
    if symbol is None:
        raise ParseError(f"coinbase: {where} for unconfigured product {value!r}")
    return symbol


class TickerParser:
    """Emit the best bid and ask carried by `ticker` messages, one quote per ticker::

        {"channel": "ticker", "timestamp": "2023-02-09T20:30:37.167359596Z", "sequence_num": 0,
         "events": [{"type": "snapshot", "tickers": [{"type": "ticker", "product_id": "BTC-USD",
            "price": "21932.98", "best_bid": "21931.98", "best_bid_quantity": "8000.21",
            "best_ask": "21933.98", "best_ask_quantity": "8038.07770938", ...}]}]}

    The ticker channel fires on trades only, so this top of book moves only when
    the product trades: between trades it ages. The adapter therefore serves its
    top of book from `level2` (`connectors.coinbase.level2`); this parser reads
    recordings of the ticker channel. `exchange_ns` is the envelope `timestamp`,
    `seq` its `sequence_num`; an out-of-order message is dropped. A crossed ticker
    gives no quote, and its first one raises BookInvalid("crossed") to withdraw the
    served quote (`connectors.top_guard.TopGuard`); both are counted in `quote_rejects`.
    """

    __slots__ = ("_guard", "_products", "_reports", "_sequence")

    def __init__(self, products: Mapping[str, str]) -> None:
        """Parse for product_id → canonical `products` (`BTC-USD` → `BTC-USD`)."""
        self._products = dict(products)
        self._sequence = SequenceCheck()
        self._reports = Reports()
        self._guard = TopGuard(VENUE, self._reports.report, ("ticker best_bid", "best_ask"))

    def parse(self, frame: str | bytes, received_ns: int) -> list[Quote]:
        """Return a quote per ticker, [] for control and out-of-order messages."""
        envelope = decode_envelope(frame)
        if envelope.channel not in CONTROL_CHANNELS and envelope.channel != "ticker":
            raise ParseError(f"coinbase: unexpected channel {envelope.channel!r} on a ticker connection")
        # Tickers are whole: a jump loses nothing we hold, but an older ticker must not win.
        if envelope.channel != "ticker":
            self._sequence.check(envelope.sequence_num)
            return self._reports.deliver([])
        if self._sequence.check(envelope.sequence_num) == "stale":
            quote_rejects(VENUE).out_of_order += 1
            return self._reports.deliver([])
        tickers = [
            self._ticker(ticker, envelope, received_ns)
            for event in envelope.events
            for ticker in field(event, "tickers", list, "coinbase ticker event")
        ]
        return self._reports.deliver(self._guard.admitted(tickers))

    def _ticker(self, ticker: object, envelope: Envelope, received_ns: int) -> Quote:
        if not isinstance(ticker, dict):
            raise ParseError(f"coinbase: ticker must be an object, got {ticker!r}")
        symbol = product_symbol(self._products, ticker.get("product_id"), "ticker")
        where = f"coinbase ticker {symbol}"
        return Quote(
            venue=VENUE,
            symbol=symbol,
            bid=price_of(ticker.get("best_bid"), f"{where} best_bid"),
            bid_qty=decimal_of(ticker.get("best_bid_quantity"), f"{where} best_bid_quantity"),
            ask=price_of(ticker.get("best_ask"), f"{where} best_ask"),
            ask_qty=decimal_of(ticker.get("best_ask_quantity"), f"{where} best_ask_quantity"),
            exchange_ns=envelope.exchange_ns,
            received_ns=received_ns,
            seq=envelope.sequence_num,
        )
