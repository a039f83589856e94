"""Keep Kraken v2 `book` order books: snapshot + updates, verified by the top-10 CRC32 checksum."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from connectors.book import OrderBook, ServedBooks
from connectors.errors import ParseError
from connectors.kraken.checksum import CHECKSUM_LEVELS, book_checksum
from connectors.kraken.parse import (
    VENUE,
    decode,
    exchange_ns_of,
    is_data,
    items,
    number_of,
    positive_of,
    symbol_of,
)
from connectors.types import Level, Quote

# The depths Kraken's `book` channel offers.
SUBSCRIPTION_DEPTHS: Final = (10, 25, 100, 500, 1000)
# Highest precision tried when pinning a pair's decimals from its snapshot checksum.
MAX_DECIMALS: Final = 12

Precision = tuple[int, int]
"""A pair's (price decimals, quantity decimals)."""


def subscription_depth(depth: int) -> int:
    """Return the smallest depth Kraken offers that holds `depth` levels (never under the checksum's 10)."""
    for offered in SUBSCRIPTION_DEPTHS:
        if offered >= depth:
            return offered
    raise ValueError(f"kraken: depth must be at most {SUBSCRIPTION_DEPTHS[-1]}, got {depth!r}")


def decimals(value: Decimal) -> int:
    """Return how many decimal places `value` was written with (`0.5660` → 4, `740` → 0)."""
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def find_precision(bids: Iterable[Level], asks: Iterable[Level], checksum: int) -> Precision | None:
    """Return the (price, quantity) decimals under which the book's checksum is `checksum`, or None.

    JSON numbers drop trailing zeros, so the decimals seen in the levels are a
    lower bound of the pair's precision; the candidates from there up are tried,
    lowest first, and the snapshot's own checksum tells the exact one.
    """
    bids, asks = tuple(bids), tuple(asks)
    levels = bids + asks
    price_floor = max((decimals(price) for price, _ in levels), default=0)
    qty_floor = max((decimals(qty) for _, qty in levels), default=0)
    for price_decimals in range(price_floor, max(price_floor, MAX_DECIMALS) + 1):
        for qty_decimals in range(qty_floor, max(qty_floor, MAX_DECIMALS) + 1):
            computed = book_checksum(bids, asks, price_decimals=price_decimals, qty_decimals=qty_decimals)
            if computed == checksum:
                return price_decimals, qty_decimals
    return None


@dataclass(frozen=True, slots=True)
class _Item:
    """One checked `book` data object."""

    symbol: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    checksum: int
    exchange_ns: int | None


class BookParser:
    """Keep one book per pair from `book` messages and emit its top `depth` levels after each::

        {"channel": "book", "type": "update", "data": [{"symbol": "MATIC/USD",
          "bids": [{"price": 0.5657, "qty": 1098.3947558}], "asks": [],
          "checksum": 2114181697, "timestamp": "2023-10-06T17:35:55.440295Z"}]}

    A snapshot replaces the pair's book; an update sets each level in order (qty 0
    deletes), then the book is cut to the subscribed depth (Kraken sends no deletes
    for levels that fall out). After each message the CRC32 of the top 10 levels
    must equal `checksum`, else the book is discarded and BookInvalid("checksum")
    raised (the pair is resubscribed). The pair's price/quantity decimals, which
    the checksum needs, are pinned from the first snapshot: its numbers give a
    lower bound and its checksum the exact value (`find_precision`); no table of
    pairs to keep up to date. Kraken sends no sequence numbers (`seq` None).
    A crossed book serves nothing: it is discarded and reported once, and a
    crossed fresh snapshot is held silently until it uncrosses. Reports beyond
    the first of a message are raised by the next parse calls.
    """

    __slots__ = ("_books", "_precision", "_subscribed", "_symbols")

    def __init__(self, symbols: Mapping[str, str], depth: int) -> None:
        """Parse for v2 pair → canonical `symbols`, serving the best `depth` levels a side."""
        self._subscribed = subscription_depth(depth)
        self._symbols = dict(symbols)
        self._books = ServedBooks(VENUE, depth)
        self._precision: dict[str, Precision] = {}

    def parse(self, frame: str | bytes, received_ns: int) -> list[Quote]:
        """Return a quote per book a `book` message changed, [] for control messages."""
        message = decode(frame)
        if not is_data(message, frame, "book"):
            return self._books.deliver([])
        kind = message.get("type")
        if kind not in ("snapshot", "update"):
            raise ParseError(f"kraken: book type must be snapshot or update, got {kind!r}")
        # Check every data object before any book changes.
        parsed = [self._item(item) for item in items(message, "book")]
        quotes: list[Quote] = []
        for item in parsed:
            if kind == "snapshot":
                quotes.extend(self._snapshot(item, received_ns))
            else:
                quotes.extend(self._update(item, received_ns))
        return self._books.deliver(quotes)

    def _snapshot(self, item: _Item, received_ns: int) -> list[Quote]:
        symbol = item.symbol
        book = OrderBook()
        book.apply_snapshot(item.bids, item.asks, None)
        book.truncate(self._subscribed)
        bids, asks = book.top(self._subscribed)
        precision = self._precision.get(symbol)
        if precision is None or self._checksum(book, precision) != item.checksum:
            precision = find_precision(bids, asks, item.checksum)
        if precision is None:
            self._books.discard(symbol, "checksum", f"snapshot checksum {item.checksum} matches no precision")
            return []
        self._precision[symbol] = precision
        self._books.start(symbol, book)
        return self._books.serve(
            symbol, book, fresh=True, exchange_ns=item.exchange_ns, received_ns=received_ns
        )

    def _update(self, item: _Item, received_ns: int) -> list[Quote]:
        symbol = item.symbol
        book = self._books.for_update(symbol, "update before a snapshot")
        if book is None:
            return []
        book.apply_levels(item.bids, item.asks)
        book.truncate(self._subscribed)
        computed = self._checksum(book, self._precision[symbol])
        if computed != item.checksum:
            # The precision may be what is wrong: pin it again from the next snapshot.
            del self._precision[symbol]
            self._books.discard(symbol, "checksum", f"computed {computed}, Kraken sent {item.checksum}")
            return []
        return self._books.serve(
            symbol, book, fresh=False, exchange_ns=item.exchange_ns, received_ns=received_ns
        )

    @staticmethod
    def _checksum(book: OrderBook, precision: Precision) -> int:
        bids, asks = book.top(CHECKSUM_LEVELS)
        return book_checksum(bids, asks, price_decimals=precision[0], qty_decimals=precision[1])

    def _item(self, item: dict[str, Any]) -> _Item:
        symbol = symbol_of(self._symbols, item, "book")
        where = f"kraken book {symbol}"
        checksum = item.get("checksum")
        if isinstance(checksum, bool) or not isinstance(checksum, int) or not 0 <= checksum < 2**32:
            raise ParseError(f"{where}: checksum must be an unsigned 32-bit integer, got {checksum!r}")
        return _Item(
            symbol=symbol,
            bids=_levels(item.get("bids"), f"{where} bids"),
            asks=_levels(item.get("asks"), f"{where} asks"),
            checksum=checksum,
            exchange_ns=exchange_ns_of(item, where),
        )


def _levels(value: object, where: str) -> tuple[Level, ...]:
    if not isinstance(value, list):
        raise ParseError(f"{where} must be a list of {{price, qty}} levels, got {value!r}")
    levels: list[Level] = []
    for level in value:
        if not isinstance(level, dict):
            raise ParseError(f"{where} level must be {{price, qty}}, got {level!r}")
        levels.append(
            (positive_of(level.get("price"), f"{where} price"), number_of(level.get("qty"), f"{where} qty"))
        )
    return tuple(levels)
