"""`connectors.book.ServedBooks`: the serve / hold / discard rule Coinbase level2 and Kraken book share."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connectors.book import BookInvalid, OrderBook, ServedBooks

D = Decimal


def _book(bid: str, ask: str, seq: int | None = None) -> OrderBook:
    book = OrderBook()
    book.apply_snapshot([(D(bid), D("1"))], [(D(ask), D("2"))], seq)
    return book


def _serve(books: ServedBooks, symbol: str, book: OrderBook, *, fresh: bool) -> list[str]:
    quotes = books.serve(symbol, book, fresh=fresh, exchange_ns=5, received_ns=7)
    return [f"{quote.symbol} {quote.bid}/{quote.ask}" for quote in quotes]


def test_a_started_book_is_served_and_updated() -> None:
    books = ServedBooks("testvenue", None)
    book = _book("10", "11", seq=3)
    books.start("A-B", book)
    assert _serve(books, "A-B", book, fresh=True) == ["A-B 10/11"]
    assert books.for_update("A-B", "unused") is book
    (quote,) = books.deliver(books.serve("A-B", book, fresh=False, exchange_ns=5, received_ns=7))
    assert (quote.seq, quote.exchange_ns, quote.received_ns, quote.bids) == (3, 5, 7, ())


def test_an_update_before_any_snapshot_is_reported_once_and_then_skipped() -> None:
    books = ServedBooks("testvenue", 1)
    assert books.for_update("A-B", "update at 9 before a snapshot") is None
    with pytest.raises(BookInvalid) as raised:
        books.deliver([])
    assert (raised.value.symbol, raised.value.reason, raised.value.detail) == (
        "A-B",
        "snapshot",
        "update at 9 before a snapshot",
    )
    assert books.for_update("A-B", "again") is None
    assert books.deliver([]) == []


def test_a_book_crossed_by_an_update_is_discarded_and_its_updates_wait_for_a_snapshot() -> None:
    books = ServedBooks("testvenue", None)
    book = _book("10", "11")
    books.start("A-B", book)
    book.apply_update("bid", D("12"), D("1"))
    assert _serve(books, "A-B", book, fresh=False) == []
    assert books.for_update("A-B", "unused") is None
    with pytest.raises(BookInvalid, match="crossed"):
        books.deliver([])
    fresh = _book("10", "11")
    books.start("A-B", fresh)
    assert books.for_update("A-B", "unused") is fresh


def test_a_crossed_fresh_snapshot_is_held_quietly_until_it_uncrosses() -> None:
    books = ServedBooks("testvenue", None)
    book = _book("12", "11")
    books.start("A-B", book)
    assert _serve(books, "A-B", book, fresh=True) == []
    assert _serve(books, "A-B", book, fresh=False) == []  # still crossed, still held: no report
    assert books.deliver([]) == []
    book.apply_update("bid", D("12"), D("0"))
    book.apply_update("bid", D("10"), D("1"))
    assert _serve(books, "A-B", book, fresh=False) == ["A-B 10/11"]
    book.apply_update("bid", D("11"), D("1"))
    assert _serve(books, "A-B", book, fresh=False) == []  # crossed after serving: discarded
    with pytest.raises(BookInvalid, match="crossed"):
        books.deliver([])


def test_a_snapshot_withdraws_the_unsent_report_of_its_symbol_and_quotes_of_others_wait() -> None:
    books = ServedBooks("testvenue", None)
    books.discard("A-B", "gap", "jump")
    books.discard("C-D", "gap", "jump")
    fresh = _book("10", "11")
    books.start("A-B", fresh)
    served = books.serve("A-B", fresh, fresh=True, exchange_ns=None, received_ns=1)
    with pytest.raises(BookInvalid) as raised:
        books.deliver(served)
    assert raised.value.symbol == "C-D"
    assert [quote.symbol for quote in books.deliver([])] == ["A-B"]
