"""Parse OKX v5 public WebSocket frames: control events and the `bbo-tbt` top of book.

Shared by both OKX parsers (`BboParser` here, `connectors.okx.books.BooksParser`):
the text `pong`, subscribe/unsubscribe acks, errors and notices, and the push
envelope `{"arg": {"channel", "instId"}, "action"?, "data": [...]}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from connectors.base import decimal_of, decode_object, field, frame_sample, price_of
from connectors.errors import ParseError, ReconnectRequested
from connectors.top_guard import TopGuard, raise_now
from connectors.types import Level, Quote

VENUE: Final = "okx"
# Sent 60 s before OKX closes the connection for a service upgrade.
NOTICE_RECONNECT: Final = "64008"
_ACK_EVENTS: Final = frozenset({"subscribe", "unsubscribe", "channel-conn-count"})


@dataclass(frozen=True, slots=True)
class Push:
    """One data push of a subscribed channel, checked down to its single `data[0]` object."""

    channel: str
    symbol: str
    action: str | None
    data: dict[str, Any]


def decode_push(frame: str | bytes, symbols: Mapping[str, str]) -> Push | None:
    """Return the push in `frame`, or None for a control frame; raise ParseError or ReconnectRequested.

    `symbols` maps OKX instIds to canonical symbols; a push for any other
    instrument (for example the SWAP instruments of OKX's own examples) is an error.
    """
    if frame in ("pong", b"pong"):
        return None
    message = decode_object(frame)
    arg = message.get("arg")
    if "event" in message or arg is None:
        control(message, frame)
        return None
    if not isinstance(arg, dict):
        raise ParseError(f"okx: 'arg' must be an object: {frame_sample(frame)!r}")
    channel = field(arg, "channel", str, "okx push arg")
    inst_id = field(arg, "instId", str, f"okx {channel} arg")
    symbol = symbols.get(inst_id)
    if symbol is None:
        raise ParseError(f"okx: {channel} push for unconfigured instrument {inst_id!r}")
    data = field(message, "data", list, f"okx {channel} {inst_id}")
    if len(data) != 1 or not isinstance(data[0], dict):
        raise ParseError(f"okx: {channel} {inst_id} 'data' must hold one object, got {len(data)} items")
    action = message.get("action")
    if action is not None and not isinstance(action, str):
        raise ParseError(f"okx: {channel} {inst_id} 'action' must be a string, got {action!r}")
    return Push(channel=channel, symbol=symbol, action=action, data=data[0])


def control(message: dict[str, Any], frame: str | bytes) -> None:
    """Accept an ack; raise ParseError for an error, ReconnectRequested for notice 64008."""
    event = message.get("event")
    if isinstance(event, str) and event in _ACK_EVENTS:  # a dict or list is unhashable
        return
    code, msg = message.get("code"), message.get("msg")
    if event == "notice" and code == NOTICE_RECONNECT:
        raise ReconnectRequested(f"okx: notice {code}: {msg!r}")
    if event in ("error", "notice", "channel-conn-count-error"):
        raise ParseError(f"okx: {event} code {code!r}: {msg!r}")
    raise ParseError(f"okx: unexpected frame without a channel: {frame_sample(frame)!r}")


def levels(value: object, name: str) -> list[Level]:
    """Return the `[price, size, "0", numOrders]` levels of one side as (price, size) Decimals."""
    if not isinstance(value, list):
        raise ParseError(f"okx: {name} must be a list of levels, got {value!r}")
    parsed: list[Level] = []
    for level in value:
        if not isinstance(level, list) or len(level) < 2:
            raise ParseError(f"okx: {name} level must be [price, size, ...], got {level!r}")
        parsed.append((price_of(level[0], f"okx {name} price"), decimal_of(level[1], f"okx {name} size")))
    return parsed


def ms_to_ns(value: object, name: str) -> int:
    """Return the nanoseconds of an OKX millisecond timestamp string (`"1597026383085"`)."""
    if not isinstance(value, str) or not value.isdigit():
        raise ParseError(f"okx: {name} must be a string of milliseconds, got {value!r}")
    return int(value) * 1_000_000


def sequence(data: dict[str, Any], key: str, where: str) -> int:
    """Return an integer sequence field (`seqId`, `prevSeqId`)."""
    return field(data, key, int, where)


class BboParser:
    """Emit the top of book of every `bbo-tbt` push (1 level a side, every 10 ms on change)::

        {"arg": {"channel": "bbo-tbt", "instId": "BTC-USDT"},
         "data": [{"asks": [["111.06", "55154", "0", "2"]], "bids": [["111.05", "57745", "0", "2"]],
                   "ts": "1670324386802", "seqId": 363996337}]}

    `exchange_ns` = `ts` ms (matching-engine time), `seq` = `seqId`, which grows
    per instrument (and may restart lower after maintenance, with a later `ts`).
    A push older than the last one served (lower `seqId`, `ts` not later) is
    dropped. During pre-open the best ask can be below the best bid: a crossed
    push gives no quote, and the first one after a served quote raises
    BookInvalid("crossed") so the served quote is withdrawn at once (the next
    uncrossed push serves again; a bbo-tbt push is whole, so nothing needs
    resyncing). Both rules are `connectors.top_guard.TopGuard`'s.
    """

    __slots__ = ("_guard", "_symbols")

    def __init__(self, symbols: Mapping[str, str]) -> None:
        """Parse for the configured instruments, given as instId → canonical (`BTC-USDT` → `BTC-USDT`)."""
        self._symbols = dict(symbols)
        self._guard = TopGuard(VENUE, raise_now, ("bbo-tbt best bid", "best ask"))

    def parse(self, frame: str | bytes, received_ns: int) -> list[Quote]:
        """Return the quote in a bbo-tbt push, [] for a control frame, a crossed or an out-of-order top."""
        push = decode_push(frame, self._symbols)
        if push is None:
            return []
        if push.channel != "bbo-tbt":
            raise ParseError(f"okx: unexpected channel {push.channel!r} on a bbo-tbt connection")
        where = f"okx bbo-tbt {push.symbol}"
        bids = levels(push.data.get("bids"), f"bbo-tbt {push.symbol} bids")
        asks = levels(push.data.get("asks"), f"bbo-tbt {push.symbol} asks")
        exchange_ns = ms_to_ns(push.data.get("ts"), f"{where} ts")
        seq = sequence(push.data, "seqId", where)
        if not bids or not asks:
            return []
        (bid, bid_qty), (ask, ask_qty) = bids[0], asks[0]
        quote = Quote(
            venue=VENUE,
            symbol=push.symbol,
            bid=bid,
            bid_qty=bid_qty,
            ask=ask,
            ask_qty=ask_qty,
            exchange_ns=exchange_ns,
            received_ns=received_ns,
            seq=seq,
        )
        return [quote] if self._guard.admit(quote) else []
