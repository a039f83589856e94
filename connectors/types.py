"""The shared vocabulary and market-data value types used by every layer.

Each shared term (side, bps, strategy, risk tolerance, mode, venue id) is defined here once and
imported everywhere else; tests/unit/test_vocabulary.py keeps it that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, getcontext
from typing import Final, Literal

import msgspec

VENUE_IDS: Final = ("binance", "bybit", "okx", "coinbase", "kraken")
"""Every venue id, in the order configs and metrics list them."""

Side = Literal["buy", "sell"]
"""An order's side: buy lifts asks, sell hits bids."""

BookSide = Literal["bid", "ask"]
"""A side of an order book."""

BPS: Final = Decimal(10_000)
"""Basis points in one: a rate times BPS is the rate in bps."""

Strategy = Literal["best_price", "preferred", "fastest", "split"]
"""How the router chooses venues for an order."""

RiskTolerance = Literal["low", "medium", "high"]
"""A user's risk tolerance, which selects their risk profile."""

Mode = Literal["paper", "live"]
"""Whether orders are simulated (paper) or sent to venues (live)."""

QUOTE_MESSAGE_MAX_LEVELS: Final = 1000
"""The most levels a side a quote message carries: feeds whose `depth` is deeper refuse to start.

At 40 characters a number, 1000 levels a side stay under 200 KB, well inside a Kafka record.
"""

Level = tuple[Decimal, Decimal]
"""One price level: (price, quantity)."""


class Quote(msgspec.Struct, frozen=True):
    """Best bid and offer of one symbol on one venue, as the venue sent it.

    Prices and quantities are exact decimals parsed from the venue's strings.
    `symbol` is canonical `BASE-QUOTE` upper case. `exchange_ns` is the venue's
    own event time when it sends one (Binance bookTicker does not), and
    `received_ns` the local wall-clock time the frame was read, both in
    nanoseconds since the Unix epoch. `seq` is the venue's update id, if any.

    `bids`/`asks` hold the book's depth, best first, when the feed maintains a
    book (the first level equals bid/ask); a top-of-book feed leaves them empty
    and the quote stands for a one-level book.

    A frozen msgspec Struct rather than a dataclass: one is built per frame, and
    a frozen dataclass costs ~4 µs to build against ~0.3 µs (see `make bench`).
    """

    venue: str
    symbol: str
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    exchange_ns: int | None
    received_ns: int
    seq: int | None
    bids: tuple[Level, ...] = ()
    asks: tuple[Level, ...] = ()

    @property
    def crossed(self) -> bool:
        """Return True when the best bid is at or above the best ask (a book that cannot be true)."""
        return self.bid >= self.ask

    def as_message(self) -> dict[str, object]:
        """Return the contract's Quote message (`smartroute.quotes`): decimals as strings, `"v": 1`.

        Numbers are written as the venue wrote them (`exact_text`: trailing zeros kept), so the
        quote rebuilt from the message is the same quote, digit for digit: a detector in another
        process sizes and names opportunities exactly as one in this process. A book quote adds
        its depth, `bids` and `asks`, as `[price, quantity]` pairs best first.
        """
        message: dict[str, object] = {
            "v": 1,
            "venue": self.venue,
            "symbol": self.symbol,
            "bid": exact_text(self.bid),
            "bid_qty": exact_text(self.bid_qty),
            "ask": exact_text(self.ask),
            "ask_qty": exact_text(self.ask_qty),
            "exchange_ns": self.exchange_ns,
            "received_ns": self.received_ns,
            "seq": self.seq,
        }
        if self.bids or self.asks:
            message["bids"] = [[exact_text(price), exact_text(qty)] for price, qty in self.bids]
            message["asks"] = [[exact_text(price), exact_text(qty)] for price, qty in self.asks]
        return message

    @classmethod
    def from_message(cls, message: Mapping[str, object]) -> Quote:
        """Rebuild a quote from its message; raise ValueError on anything not of the contract's shape."""
        if message.get("v") != 1:
            raise ValueError(f"unsupported quote version {message.get('v')!r}")
        try:
            values = [Decimal(_text(message[k])) for k in ("bid", "bid_qty", "ask", "ask_qty")]
        except (KeyError, ArithmeticError) as exc:
            raise ValueError(f"quote prices must be decimal strings: {exc!r}") from exc
        if not all(v.is_finite() and v >= 0 for v in values) or values[0] <= 0 or values[2] <= 0:
            raise ValueError("quote prices must be positive and sizes non-negative")
        venue, symbol, received_ns = message.get("venue"), message.get("symbol"), message.get("received_ns")
        exchange_ns, seq = message.get("exchange_ns"), message.get("seq")
        if not isinstance(venue, str) or not isinstance(symbol, str) or not _is_int(received_ns):
            raise ValueError("quote needs string venue and symbol and an integer received_ns")
        if not (exchange_ns is None or _is_int(exchange_ns)) or not (seq is None or _is_int(seq)):
            raise ValueError("exchange_ns and seq must be integers or null")
        bid, bid_qty, ask, ask_qty = values
        bids, asks = _depth_of(message, (bid, bid_qty), (ask, ask_qty))
        return cls(
            venue=venue,
            symbol=symbol,
            bid=bid,
            bid_qty=bid_qty,
            ask=ask,
            ask_qty=ask_qty,
            exchange_ns=None if exchange_ns is None else int(str(exchange_ns)),
            received_ns=int(str(received_ns)),
            seq=None if seq is None else int(str(seq)),
            bids=bids,
            asks=asks,
        )

    def bid_levels(self) -> tuple[Level, ...]:
        """Return the bid side best first: the depth when known, else the top level alone."""
        return self.bids or ((self.bid, self.bid_qty),)

    def ask_levels(self) -> tuple[Level, ...]:
        """Return the ask side best first: the depth when known, else the top level alone."""
        return self.asks or ((self.ask, self.ask_qty),)


class Withdrawal(msgspec.Struct, frozen=True):
    """A venue's book of one symbol taken out of service (the `smartroute.quotes` withdrawal message).

    Feeds publish it when a book fails its integrity rule (`reason` "gap", "checksum",
    "crossed", "sequence", "snapshot") or its connection ends ("disconnected"), at the
    wall-clock time `received_ns` they learned it. A reader drops the venue's quote of the
    symbol at once; the next quote of that book (after its resync) puts it back.
    """

    venue: str
    symbol: str
    reason: str
    received_ns: int

    def as_message(self) -> dict[str, object]:
        """Return the contract's message: `{"v": 1, "event": "withdrawn", venue, symbol, reason, ...}`."""
        return {
            "v": 1,
            "event": "withdrawn",
            "venue": self.venue,
            "symbol": self.symbol,
            "reason": self.reason,
            "received_ns": self.received_ns,
        }

    @classmethod
    def from_message(cls, message: Mapping[str, object]) -> Withdrawal:
        """Rebuild a withdrawal from its message; raise ValueError on anything not of the contract's shape."""
        if message.get("v") != 1 or message.get("event") != "withdrawn":
            raise ValueError(f"not a v1 withdrawal: v={message.get('v')!r} event={message.get('event')!r}")
        venue, symbol = message.get("venue"), message.get("symbol")
        reason, received_ns = message.get("reason"), message.get("received_ns")
        if not all(isinstance(text, str) and text for text in (venue, symbol, reason)):
            raise ValueError("a withdrawal needs string venue, symbol and reason")
        if not _is_int(received_ns):
            raise ValueError("a withdrawal needs an integer received_ns")
        return cls(str(venue), str(symbol), str(reason), int(str(received_ns)))


def quote_message_of(message: Mapping[str, object]) -> Quote | Withdrawal:
    """Return the quote or withdrawal a `smartroute.quotes` message holds; raise ValueError otherwise."""
    event = message.get("event")
    if event is None:
        return Quote.from_message(message)
    if event == "withdrawn":
        return Withdrawal.from_message(message)
    raise ValueError(f"unknown quotes event {event!r}")


def _depth_of(
    message: Mapping[str, object], bid: Level, ask: Level
) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
    """Return the checked `bids`/`asks` of a book quote message, both empty for a top-of-book quote."""
    if "bids" not in message and "asks" not in message:
        return (), ()
    bids = _side_of(message.get("bids"), "bids", bid, descending=True)
    asks = _side_of(message.get("asks"), "asks", ask, descending=False)
    return bids, asks


def _side_of(value: object, name: str, top: Level, *, descending: bool) -> tuple[Level, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= QUOTE_MESSAGE_MAX_LEVELS:
        raise ValueError(f"{name} must be a list of 1 to {QUOTE_MESSAGE_MAX_LEVELS} [price, quantity] levels")
    levels: list[Level] = []
    for level in value:
        if not isinstance(level, list) or len(level) != 2:
            raise ValueError(f"{name} level must be [price, quantity], got {level!r}")
        try:
            price, qty = Decimal(_text(level[0])), Decimal(_text(level[1]))
        except ArithmeticError as exc:
            raise ValueError(f"{name} levels must be decimal strings: {exc!r}") from exc
        if not (price.is_finite() and qty.is_finite() and price > 0 and qty > 0):
            raise ValueError(f"{name} level {level!r} must have a positive price and quantity")
        if levels and (price >= levels[-1][0] if descending else price <= levels[-1][0]):
            raise ValueError(f"{name} must be strictly {'descending' if descending else 'ascending'}")
        levels.append((price, qty))
    if levels[0] != top:
        raise ValueError(f"the first of {name} must be the quote's best level {top!r}")
    return tuple(levels)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ArithmeticError(f"{value!r} is not a decimal string")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def exact_text(value: Decimal) -> str:
    """Return `value` in plain notation with the digits it was parsed from (`1.20000` stays `1.20000`).

    What a quote message carries: a rebuilt Decimal equals the original in value and in form.
    """
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value}")
    return format(value, "f")


def decimal_text(value: Decimal) -> str:
    """Return `value` as a plain decimal string (never exponent notation), without trailing zeros.

    This is how every price, quantity and amount is written into a Kafka message.
    """
    text = str(value)
    # Already plain (no exponent, NaN or Infinity) and too short for normalize() to round: trim it.
    if "E" not in text and "N" not in text and "n" not in text and len(text) <= getcontext().prec:
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value}")
    text = format(value.normalize(), "f")
    return "0" if text == "-0" else text
