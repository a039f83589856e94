"""Admit a venue's top-of-book quotes (tickers, BBO feeds): never crossed, never older than the last.

Book parsers keep their books in `connectors.book`; a ticker carries the whole
top in each message, so its parser needs only the order and crossing checks here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from connectors.book import BookInvalid, quote_rejects
from connectors.types import Quote

# Out-of-order updates of one symbol in a row after which its venue is taken to have renumbered.
RESTART_AFTER_OUT_OF_ORDER: Final = 100


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
