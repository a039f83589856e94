"""A local order book per (venue, symbol), and the error a parser raises when one is no longer true.

Each venue's parser keeps one `OrderBook` per symbol and applies its venue's
integrity rule (sequence continuity, checksums). When the rule fails the parser
discards the book and raises `BookInvalid`; the runner then resyncs the symbol
and nothing downstream sees the discarded book (old and new are never mixed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from connectors.errors import ParseError
from connectors.types import Level, Quote

Side = Literal["bid", "ask"]
SIDES: Final[tuple[Side, ...]] = ("bid", "ask")

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
# Out-of-order updates of one symbol in a row after which its venue is taken to have renumbered.
RESTART_AFTER_OUT_OF_ORDER: Final = 100


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

    def apply_update(self, side: Side, price: Decimal, qty: Decimal) -> None:
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


class TopGuard:
    """Admit one connection's top-of-book quotes: never a crossed one, never one older than the last.

    Judged per symbol, with the venue's own ordering as the quote carries it:
    `seq` (the venue's update id) and `exchange_ns`. A quote is out of order when
    its `seq` is below the last admitted one's and its exchange time is not later
    (a later exchange time under a lower id is the venue restarting its numbering,
    as OKX does after maintenance), or, without ids, when its exchange time is
    earlier. Equal ids pass (a venue re-pushing an unchanged top); a quote with
    neither id nor time is never out of order. A parser keeps one guard per
    connection, so the first quote of a new connection is always admitted.
    What each venue's top of book offers: Binance bookTicker `u` only (no time);
    OKX bbo-tbt `seqId` per instrument and `ts`; Kraken ticker `timestamp` only;
    Coinbase a `sequence_num` per connection and the envelope `timestamp` (its
    level2 books and Bybit's `orderbook.1`, books rather than tickers, apply the
    same rule to whole messages: `sequence_num`, or `u` and `ts`).

    A crossed quote (best bid at or above best ask) cannot be traded on: the first
    of an episode is reported with BookInvalid("crossed") through `report` (the
    served quote is withdrawn at once), the rest of the episode quietly; it still
    counts as the symbol's latest update. An out-of-order quote is dropped and the
    newer one served stands. Both are counted in `quote_rejects(venue)`. After
    `RESTART_AFTER_OUT_OF_ORDER` out-of-order quotes in a row, the venue has
    evidently restarted its numbering: the symbol's order is forgotten and reported
    with BookInvalid("sequence"), so its next quote is admitted.
    """

    __slots__ = ("_behind", "_counts", "_crossed", "_last", "_names", "_report")

    def __init__(self, venue: str, report: Callable[[BookInvalid], None], names: tuple[str, str]) -> None:
        """Guard `venue`'s quotes; `report` takes the BookInvalid to raise now or with the next quotes.

        `names` are the venue's bid/ask field names, for the report's message.
        """
        self._counts = quote_rejects(venue)
        self._report = report
        self._names = names
        self._last: dict[str, tuple[int | None, int | None]] = {}
        self._crossed: set[str] = set()
        self._behind: dict[str, int] = {}

    def admit(self, quote: Quote) -> bool:
        """Return True when `quote` may be served; count (and report) it when not."""
        symbol = quote.symbol
        last = self._last.get(symbol)
        if last is not None and is_older(quote.seq, quote.exchange_ns, last):
            return self._out_of_order(quote, last)
        self._last[symbol] = (quote.seq, quote.exchange_ns)
        if self._behind:
            self._behind.pop(symbol, None)
        if quote.bid >= quote.ask:
            self._counts.crossed += 1
            if symbol not in self._crossed:
                self._crossed.add(symbol)
                detail = f"{self._names[0]} {quote.bid} >= {self._names[1]} {quote.ask}"
                self._report(BookInvalid(symbol, "crossed", detail))
            return False
        if self._crossed:
            self._crossed.discard(symbol)
        return True

    def admitted(self, quotes: list[Quote]) -> list[Quote]:
        """Return the quotes of `quotes` that `admit` lets through, in order."""
        return [quote for quote in quotes if self.admit(quote)]

    def _out_of_order(self, quote: Quote, last: tuple[int | None, int | None]) -> bool:
        self._counts.out_of_order += 1
        symbol = quote.symbol
        behind = self._behind[symbol] = self._behind.get(symbol, 0) + 1
        if behind >= RESTART_AFTER_OUT_OF_ORDER:
            del self._last[symbol], self._behind[symbol]
            detail = f"{behind} updates in a row older than seq={last[0]} exchange_ns={last[1]}"
            self._report(BookInvalid(symbol, "sequence", detail))
        return False


def is_older(seq: int | None, stamp: int | None, last: tuple[int | None, int | None]) -> bool:
    """Return True when an update (`seq`, `stamp`) comes before the `last` (seq, stamp) applied.

    By id when both have one, unless the stamp is later (the venue renumbered);
    else by stamp when both have one; else it cannot be told, and it is not older.
    """
    last_seq, last_stamp = last
    if seq is not None and last_seq is not None:
        if seq >= last_seq:
            return False
        return stamp is None or last_stamp is None or stamp <= last_stamp
    return stamp is not None and last_stamp is not None and stamp < last_stamp


def raise_now(invalid: BookInvalid) -> None:
    """Raise `invalid` at once: the `TopGuard` report of a parser whose frames carry one quote."""
    raise invalid
