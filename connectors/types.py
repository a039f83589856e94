"""Market-data value types shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

VENUE_IDS: Final = ("binance", "bybit", "okx", "coinbase", "kraken")

Level = tuple[Decimal, Decimal]
"""One price level: (price, quantity)."""


@dataclass(frozen=True, slots=True)
class Quote:
    """Best bid and offer of one symbol on one venue, as the venue sent it.

    Prices and quantities are exact decimals parsed from the venue's strings.
    `symbol` is canonical `BASE-QUOTE` upper case. `exchange_ns` is the venue's
    own event time when it sends one (Binance bookTicker does not), and
    `received_ns` the local wall-clock time the frame was read, both in
    nanoseconds since the Unix epoch. `seq` is the venue's update id, if any.

    `bids`/`asks` hold the book's depth, best first, when the feed maintains a
    book (the first level equals bid/ask); a top-of-book feed leaves them empty
    and the quote stands for a one-level book.
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

    def bid_levels(self) -> tuple[Level, ...]:
        """Return the bid side best first: the depth when known, else the top level alone."""
        return self.bids or ((self.bid, self.bid_qty),)

    def ask_levels(self) -> tuple[Level, ...]:
        """Return the ask side best first: the depth when known, else the top level alone."""
        return self.asks or ((self.ask, self.ask_qty),)


def decimal_text(value: Decimal) -> str:
    """Return `value` as a plain decimal string (never exponent notation), without trailing zeros.

    This is how every price, quantity and amount is written into a Kafka message.
    """
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value}")
    text = format(value.normalize(), "f")
    return "0" if text == "-0" else text
