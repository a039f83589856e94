"""A local order book per (venue, symbol), and the error a parser raises when one is no longer true.

Each venue's parser keeps one `OrderBook` per symbol and applies its venue's
integrity rule (sequence continuity, checksums). When the rule fails the parser
discards the book and raises `BookInvalid`; the runner then resyncs the symbol
and nothing downstream sees the discarded book (old and new are never mixed).
A parser whose venue resyncs a symbol with a new stream snapshot keeps its books
in a `ServedBooks` (serve, hold a crossed fresh snapshot, discard and report);
the others apply the same crossing rule through `serve_or_hold` or their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from connectors.errors import ParseError
from connectors.types import BookSide, Level, Quote

SIDES: Final[tuple[BookSide, ...]] = ("bid", "ask")

BookInvalidReason = Literal["gap", "checksum", "crossed", "sequence", "snapshot"]
BOOK_INVALID_REASONS: Final[tuple[BookInvalidReason, ...]] = (
    "gap",
    "checksum",
    "crossed",
    "sequence",
    "snapshot",
)

QuoteRejectReason = Literal["crossed", "out_of_order"]
QUOTE_REJECT_REASONS: Final[tuple[QuoteRejectReason, ...]] = ("crossed", "out_of_order")


@dataclass(slots=True)
class QuoteRejects:
    """One venue's quotes a feed refused to serve, by reason (`smartroute_quotes_rejected_total`).

    Plain numbers on the hot path, exported at scrape time by `connectors.metrics`.
    `crossed`: best bid at or above best ask. `out_of_order`: older than an update
    already applied or served for the symbol.
    """

    crossed: int = 0
    out_of_order: int = 0


_QUOTE_REJECTS: dict[str, QuoteRejects] = {}


def quote_rejects(venue: str) -> QuoteRejects:
    """Return the shared refused-quote counts of `venue` (every parser of the venue adds to the same)."""
    counts = _QUOTE_REJECTS.get(venue)
    if counts is None:
        counts = _QUOTE_REJECTS[venue] = QuoteRejects()
    return counts


def all_quote_rejects() -> dict[str, QuoteRejects]:
    """Return venue → refused-quote counts of every venue seen so far."""
    return dict(_QUOTE_REJECTS)


class BookInvalid(ParseError):
    """A symbol's local book can no longer be trusted; the parser has already discarded it.

    `reason` is one of `BOOK_INVALID_REASONS`: "gap" (an update is missing),
    "checksum" (the venue's checksum disagrees), "crossed" (best bid ≥ best ask
    after an update), "sequence" (an id that cannot follow the previous one) or
    "snapshot" (a snapshot that cannot be aligned with the buffered updates).
    """

    def __init__(self, symbol: str, reason: BookInvalidReason, detail: str) -> None:
        """Name the canonical `symbol`, why its book was discarded and the details."""
        super().__init__(f"{symbol}: book {reason}: {detail}")
        self.symbol = symbol
        self.reason = reason
        self.detail = detail


class _BookSide:
    """One side of a book: price → quantity, with a sorted price list rebuilt only when read."""

    __slots__ = ("_descending", "_levels", "_sorted")

    def __init__(self, *, descending: bool) -> None:
        self._descending = descending
        self._levels: dict[Decimal, Decimal] = {}
        self._sorted: list[Decimal] | None = []

    def __len__(self) -> int:
        return len(self._levels)

    def set(self, price: Decimal, qty: Decimal) -> None:
        """Set a level's quantity; quantity 0 deletes it."""
        if qty:
            if price not in self._levels:
                self._sorted = None
            self._levels[price] = qty
        elif self._levels.pop(price, None) is not None:
            self._sorted = None

    def clear(self) -> None:
        """Remove every level."""
        self._levels.clear()
        self._sorted = []

    def prices(self) -> list[Decimal]:
        """Return the prices best first (bids descending, asks ascending)."""
        if self._sorted is None:
            self._sorted = sorted(self._levels, reverse=self._descending)
        return self._sorted

    def top(self, n: int) -> tuple[Level, ...]:
        """Return the best `n` levels, best first."""
        levels = self._levels
        return tuple((price, levels[price]) for price in self.prices()[:n])

    def truncate(self, depth: int) -> None:
        """Keep only the best `depth` levels."""
        prices = self.prices()
        if len(prices) > depth:
            for price in prices[depth:]:
                del self._levels[price]
            del prices[depth:]


class OrderBook:
    """A price-level order book: a dict per side plus a lazily sorted view for top-N reads.

    Prices and quantities are Decimal. `seq` is the venue's last applied
    sequence (update id), None until a snapshot sets it.
    """

    __slots__ = ("_asks", "_bids", "seq")

    def __init__(self) -> None:
        """Start empty, with no sequence."""
        self._bids = _BookSide(descending=True)
        self._asks = _BookSide(descending=False)
        self.seq: int | None = None

    def __repr__(self) -> str:
        bids, asks = self.top(1)
        return f"OrderBook(seq={self.seq!r}, levels={len(self._bids)}/{len(self._asks)}, top={bids}/{asks})"

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level], seq: int | None) -> None:
        """Replace the whole book with these levels (quantity 0 levels are skipped) at sequence `seq`."""
        self.clear()
        for price, qty in bids:
            self._bids.set(price, qty)
        for price, qty in asks:
            self._asks.set(price, qty)
        self.seq = seq

    def apply_update(self, side: BookSide, price: Decimal, qty: Decimal) -> None:
        """Set the quantity at `price` on `side` ("bid" or "ask"); quantity 0 deletes the level."""
        if side == "bid":
            self._bids.set(price, qty)
        elif side == "ask":
            self._asks.set(price, qty)
        else:
            raise ValueError(f"side must be 'bid' or 'ask', got {side!r}")

    def apply_levels(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Apply many level updates to both sides (quantity 0 deletes)."""
        for price, qty in bids:
            self._bids.set(price, qty)
        for price, qty in asks:
            self._asks.set(price, qty)

    def truncate(self, depth: int) -> None:
        """Keep only the best `depth` levels of each side; raise ValueError if depth < 1."""
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth!r}")
        self._bids.truncate(depth)
        self._asks.truncate(depth)

    def top(self, n: int) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """Return the best `n` (bids, asks), each best first."""
        return self._bids.top(n), self._asks.top(n)

    @property
    def best_bid(self) -> Level | None:
        """Return the highest bid level, None when the bid side is empty."""
        top = self._bids.top(1)
        return top[0] if top else None

    @property
    def best_ask(self) -> Level | None:
        """Return the lowest ask level, None when the ask side is empty."""
        top = self._asks.top(1)
        return top[0] if top else None

    @property
    def crossed(self) -> bool:
        """Return True when both sides exist and the best bid is at or above the best ask."""
        bid, ask = self.best_bid, self.best_ask
        return bid is not None and ask is not None and bid[0] >= ask[0]

    @property
    def empty(self) -> bool:
        """Return True when either side has no level (nothing two-sided to serve)."""
        return not self._bids or not self._asks

    def depth(self) -> tuple[int, int]:
        """Return how many (bid, ask) levels the book holds."""
        return len(self._bids), len(self._asks)

    def clear(self) -> None:
        """Remove every level and forget the sequence."""
        self._bids.clear()
        self._asks.clear()
        self.seq = None


def book_quote(
    book: OrderBook,
    *,
    venue: str,
    symbol: str,
    depth: int | None,
    exchange_ns: int | None,
    received_ns: int,
) -> Quote | None:
    """Return the book's top as a Quote (with `depth` levels a side, none when depth is None).

    Returns None while either side is empty. The caller checks `book.crossed`
    first: a crossed book is discarded and reported with BookInvalid, never served.
    `seq` is the book's `seq`.
    """
    bids, asks = book.top(1 if depth is None else depth)
    if not bids or not asks:
        return None
    (bid, bid_qty), (ask, ask_qty) = bids[0], asks[0]
    if depth is None:
        bids, asks = (), ()
    return Quote(
        venue=venue,
        symbol=symbol,
        bid=bid,
        bid_qty=bid_qty,
        ask=ask,
        ask_qty=ask_qty,
        exchange_ns=exchange_ns,
        received_ns=received_ns,
        seq=book.seq,
        bids=bids,
        asks=asks,
    )


def serve_or_hold(
    book: OrderBook,
    held: set[str],
    discard: Callable[[str, str], None],
    *,
    fresh: bool,
    venue: str,
    symbol: str,
    depth: int | None,
    exchange_ns: int | None,
    received_ns: int,
) -> list[Quote]:
    """Return the book's quote, or nothing while it is crossed.

    A crossed book's quote is counted as refused (`quote_rejects`). A book that crosses
    after an update cannot be true: `discard(symbol, detail)`
    drops it (the caller reports BookInvalid "crossed" and resyncs). A fresh
    snapshot that is already crossed (a venue's pre-open book) is held quietly in
    `held` until it uncrosses, instead of resyncing into the same crossed book again.
    """
    if book.crossed:
        quote_rejects(venue).crossed += 1
        if fresh or symbol in held:
            held.add(symbol)
        else:
            bids, asks = book.top(1)
            discard(symbol, f"best bid {bids[0][0]} >= best ask {asks[0][0]}")
        return []
    held.discard(symbol)
    quote = book_quote(
        book, venue=venue, symbol=symbol, depth=depth, exchange_ns=exchange_ns, received_ns=received_ns
    )
    return [] if quote is None else [quote]


class Reports:
    """Deliver a frame's quotes, raising the BookInvalid of discarded books one per parse call.

    A frame can discard several books (a sequence jump discards all of them) but a
    parse call raises one error; the other reports wait for the next calls, and the
    quotes of a call that raises are delivered by the next one that returns.
    """

    __slots__ = ("_pending", "_quotes")

    def __init__(self) -> None:
        """Start with nothing to deliver."""
        self._pending: dict[str, BookInvalid] = {}
        self._quotes: list[Quote] = []

    def report(self, invalid: BookInvalid) -> None:
        """Queue the report of a discarded book and drop the quotes held back for its symbol."""
        self._pending.setdefault(invalid.symbol, invalid)
        self._quotes = [quote for quote in self._quotes if quote.symbol != invalid.symbol]

    def withdraw(self, symbol: str) -> None:
        """Forget an unsent report: `symbol` is in sync again (a snapshot arrived first)."""
        self._pending.pop(symbol, None)

    def deliver(self, quotes: list[Quote]) -> list[Quote]:
        """Return every quote held back plus `quotes`, or raise the next pending BookInvalid."""
        self._quotes.extend(quotes)
        if self._pending:
            symbol = next(iter(self._pending))
            raise self._pending.pop(symbol)
        delivered, self._quotes = self._quotes, []
        return delivered


class ServedBooks:
    """The books one connection's parser serves, for a venue that resyncs a symbol with a new stream snapshot.

    Per symbol: its book; whether it awaits a snapshot (its book was discarded:
    updates are skipped until `start` installs a new one); whether it is held
    (a fresh snapshot arrived crossed: silent until it uncrosses, see
    `serve_or_hold`). `discard` drops a book and queues its BookInvalid in the
    `Reports` that `deliver` raises, one per parse call. Coinbase `level2` and
    Kraken `book` keep their books here.
    """

    __slots__ = ("_awaiting", "_books", "_depth", "_held", "_reports", "_venue")

    def __init__(self, venue: str, depth: int | None) -> None:
        """Serve `venue`'s books with `depth` levels a side (None: the top level alone)."""
        self._venue = venue
        self._depth = depth
        self._books: dict[str, OrderBook] = {}
        self._awaiting: set[str] = set()
        self._held: set[str] = set()
        self._reports = Reports()

    def start(self, symbol: str, book: OrderBook) -> None:
        """Make `book`, built from a snapshot, the symbol's book: in sync, an unsent report withdrawn."""
        self._books[symbol] = book
        self._awaiting.discard(symbol)
        self._held.discard(symbol)
        self._reports.withdraw(symbol)

    def for_update(self, symbol: str, missing: str) -> OrderBook | None:
        """Return the book an update of `symbol` applies to, or None to skip the update.

        None while the symbol awaits a snapshot; a symbol with no book at all (its
        snapshot was lost) is discarded with BookInvalid("snapshot", `missing`).
        """
        if symbol in self._awaiting:
            return None
        book = self._books.get(symbol)
        if book is None:
            self.discard(symbol, "snapshot", missing)
        return book

    def serve(
        self, symbol: str, book: OrderBook, *, fresh: bool, exchange_ns: int | None, received_ns: int
    ) -> list[Quote]:
        """Return the book's quote; a crossed book is held when `fresh`, else discarded ("crossed")."""
        return serve_or_hold(
            book,
            self._held,
            self._discard_crossed,
            fresh=fresh,
            venue=self._venue,
            symbol=symbol,
            depth=self._depth,
            exchange_ns=exchange_ns,
            received_ns=received_ns,
        )

    def discard(self, symbol: str, reason: BookInvalidReason, detail: str) -> None:
        """Drop the symbol's book until a snapshot comes, and queue its BookInvalid report."""
        self._books.pop(symbol, None)
        self._held.discard(symbol)
        self._awaiting.add(symbol)
        self._reports.report(BookInvalid(symbol, reason, detail))

    def _discard_crossed(self, symbol: str, detail: str) -> None:
        self.discard(symbol, "crossed", detail)

    def deliver(self, quotes: list[Quote]) -> list[Quote]:
        """Return the quotes of a parse call, or raise the next pending BookInvalid (`Reports.deliver`)."""
        return self._reports.deliver(quotes)
