"""Local order books: the OrderBook itself, and stateful models of the Binance and Bybit integrity rules.

The stateful tests play a venue that keeps a true book and a wire that drops,
duplicates and reorders its messages, and a runner that resyncs whatever the
parser reports invalid. At every step the book the parser serves equals the
venue's true book at the sequence the quote names, and after a BookInvalid
nothing is served for the symbol until it is resynced.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from connectors.binance.depth import DepthParser
from connectors.book import BOOK_INVALID_REASONS, BookInvalid, OrderBook, book_quote
from connectors.bybit.parse import OrderbookParser
from connectors.errors import ParseError
from connectors.types import Level, Quote

D = Decimal
DEPTH = 4
# Bids and asks never overlap, so the true book is never crossed; the anchors are never deleted,
# so the true book always has both sides.
BID_PRICES = [D("10") + D(n) / 4 for n in range(12)]
ASK_PRICES = [D("20") + D(n) / 4 for n in range(12)]
BID_ANCHOR, ASK_ANCHOR = BID_PRICES[0], ASK_PRICES[-1]
QTYS = [D("0"), D("0"), D("0.5"), D("1"), D("2.25")]

TrueBook = tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]


# --- OrderBook ---------------------------------------------------------------------------------


def test_snapshot_then_updates_give_the_best_levels_first() -> None:
    book = OrderBook()
    book.apply_snapshot([(D("100"), D("1")), (D("99"), D("2"))], [(D("101"), D("3")), (D("102"), D("4"))], 7)

    book.apply_update("bid", D("100.5"), D("5"))
    book.apply_update("ask", D("101"), D("0"))

    assert book.top(2) == (
        ((D("100.5"), D("5")), (D("100"), D("1"))),
        ((D("102"), D("4")),),
    )
    assert (book.best_bid, book.best_ask, book.seq) == ((D("100.5"), D("5")), (D("102"), D("4")), 7)


def test_zero_quantity_deletes_and_deleting_an_absent_level_changes_nothing() -> None:
    book = OrderBook()
    book.apply_snapshot([(D("100"), D("1"))], [(D("101"), D("1")), (D("105"), D("0"))], 1)

    book.apply_update("bid", D("100"), D("0"))
    book.apply_update("bid", D("42"), D("0"))

    assert book.top(5) == ((), ((D("101"), D("1")),))
    assert book.best_bid is None and book.empty


def test_snapshot_replaces_the_whole_book() -> None:
    book = OrderBook()
    book.apply_snapshot([(D("100"), D("1"))], [(D("101"), D("1"))], 1)

    book.apply_snapshot([(D("50"), D("2"))], [(D("51"), D("2"))], 9)

    assert book.top(5) == (((D("50"), D("2")),), ((D("51"), D("2")),))
    assert book.seq == 9


def test_truncate_keeps_the_best_levels_of_each_side() -> None:
    book = OrderBook()
    book.apply_snapshot([(D(p), D("1")) for p in (97, 98, 99)], [(D(p), D("1")) for p in (101, 102, 103)], 1)

    book.truncate(2)

    assert book.depth() == (2, 2)
    assert [price for price, _ in book.top(5)[0]] == [D(99), D(98)]
    assert [price for price, _ in book.top(5)[1]] == [D(101), D(102)]
    with pytest.raises(ValueError, match="at least 1"):
        book.truncate(0)


@pytest.mark.parametrize(
    ("bid", "ask", "crossed"), [("100", "101", False), ("101", "101", True), ("102", "101", True)]
)
def test_book_is_crossed_when_best_bid_reaches_best_ask(bid: str, ask: str, crossed: bool) -> None:
    book = OrderBook()
    book.apply_snapshot([(D(bid), D("1"))], [(D(ask), D("1"))], 1)

    assert book.crossed is crossed


def test_one_sided_book_is_not_crossed() -> None:
    book = OrderBook()
    book.apply_snapshot([(D("100"), D("1"))], [], 1)

    assert not book.crossed


def test_unknown_side_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="side must be"):
        OrderBook().apply_update("buy", D("1"), D("1"))  # type: ignore[arg-type]


def test_clear_forgets_levels_and_sequence() -> None:
    book = OrderBook()
    book.apply_snapshot([(D("100"), D("1"))], [(D("101"), D("1"))], 5)

    book.clear()

    assert (book.top(1), book.seq, book.empty) == (((), ()), None, True)


def test_book_quote_carries_the_top_levels_and_the_sequence() -> None:
    book = OrderBook()
    book.apply_snapshot([(D("100"), D("1")), (D("99"), D("2"))], [(D("101"), D("3"))], 12)

    deep = book_quote(book, venue="binance", symbol="BTC-USDT", depth=5, exchange_ns=3, received_ns=4)
    top = book_quote(book, venue="binance", symbol="BTC-USDT", depth=None, exchange_ns=None, received_ns=4)

    assert deep == Quote(
        venue="binance",
        symbol="BTC-USDT",
        bid=D("100"),
        bid_qty=D("1"),
        ask=D("101"),
        ask_qty=D("3"),
        exchange_ns=3,
        received_ns=4,
        seq=12,
        bids=((D("100"), D("1")), (D("99"), D("2"))),
        asks=((D("101"), D("3")),),
    )
    assert top is not None and (top.bid, top.ask, top.bids, top.asks) == (D("100"), D("101"), (), ())


def test_book_quote_of_a_one_sided_book_is_none() -> None:
    book = OrderBook()
    book.apply_snapshot([(D("100"), D("1"))], [], 1)

    assert book_quote(book, venue="bybit", symbol="BTC-USDT", depth=3, exchange_ns=1, received_ns=1) is None


def test_book_invalid_is_a_parse_error_naming_symbol_and_reason() -> None:
    error = BookInvalid("BTC-USDT", "gap", "U=5 follows u=3")

    assert isinstance(error, ParseError)
    assert (error.symbol, error.reason, str(error)) == (
        "BTC-USDT",
        "gap",
        "BTC-USDT: book gap: U=5 follows u=3",
    )
    assert set(BOOK_INVALID_REASONS) >= {"gap", "checksum", "crossed"}


updates = st.lists(
    st.tuples(
        st.sampled_from(["bid", "ask"]), st.sampled_from(BID_PRICES + ASK_PRICES), st.sampled_from(QTYS)
    ),
    max_size=60,
)


@given(updates=updates, depth=st.integers(1, 8), reads=st.sets(st.integers(0, 60)))
def test_book_equals_a_dict_model_whenever_it_is_read(
    updates: list[tuple[Any, Decimal, Decimal]], depth: int, reads: set[int]
) -> None:
    # Reads between updates exercise the lazily sorted view going stale and being rebuilt.
    book = OrderBook()
    model: TrueBook = ({}, {})
    for number, (side, price, qty) in enumerate(updates):
        book.apply_update(side, price, qty)
        levels = model[0] if side == "bid" else model[1]
        if qty:
            levels[price] = qty
        else:
            levels.pop(price, None)
        if number in reads:
            assert book.top(depth) == top_of(model, depth)
    assert book.top(depth) == top_of(model, depth)


def top_of(book: TrueBook, depth: int) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
    bids, asks = book
    return (
        tuple(sorted(bids.items(), reverse=True)[:depth]),
        tuple(sorted(asks.items())[:depth]),
    )


# --- the venue models --------------------------------------------------------------------------

level_changes = (
    st.lists(st.tuples(st.sampled_from(BID_PRICES[1:]), st.sampled_from(QTYS)), max_size=4),
    st.lists(st.tuples(st.sampled_from(ASK_PRICES[:-1]), st.sampled_from(QTYS)), max_size=4),
)


def wire_levels(changes: list[tuple[Decimal, Decimal]]) -> list[list[str]]:
    return [[str(price), str(qty)] for price, qty in changes]


def book_levels(levels: dict[Decimal, Decimal]) -> list[list[str]]:
    return [[str(price), str(qty)] for price, qty in levels.items()]


def apply_changes(
    book: TrueBook, bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]]
) -> None:
    for side, changes in ((book[0], bids), (book[1], asks)):
        for price, qty in changes:
            if qty:
                side[price] = qty
            else:
                side.pop(price, None)


def copy_book(book: TrueBook) -> TrueBook:
    return dict(book[0]), dict(book[1])


@dataclass(frozen=True)
class Sent:
    """A message on the wire, with the true book's key after it (epoch, update id)."""

    frame: bytes
    key: tuple[int, int]
    # A whole book (snapshot or u == 1), which may serve a discarded symbol again.
    whole: bool = False
    # A venue restart (Bybit u == 1) restarts the numbering: an update moved across it would
    # continue the old book's numbering, which no rule can tell apart, so the wire keeps its place.
    restart: bool = False


class VenueWire(RuleBasedStateMachine):
    """The venue's true book, a faulty wire, and what the parser serves; venue specifics in subclasses."""

    def __init__(self) -> None:
        super().__init__()
        self.truth: TrueBook = ({BID_ANCHOR: D("1")}, {ASK_ANCHOR: D("1")})
        self.epoch = 0
        self.last_id = 100
        self.history: dict[tuple[int, int], TrueBook] = {(0, 100): copy_book(self.truth)}
        self.wire: list[Sent] = []
        self.served: Quote | None = None
        self.served_key: tuple[int, int] | None = None
        self.invalidations = 0
        self.clock = 0
        # After a BookInvalid (and before the first book), only a whole book may be served.
        self.awaiting_whole_book = True

    def record_truth(self) -> None:
        self.history[(self.epoch, self.last_id)] = copy_book(self.truth)

    def now(self) -> int:
        self.clock += 1
        return self.clock

    @precondition(lambda self: self.wire)
    @rule(fault=st.sampled_from(["deliver", "deliver", "deliver", "drop", "duplicate", "swap"]))
    def wire_step(self, fault: str) -> None:
        if fault == "swap" and len(self.wire) >= 2 and not (self.wire[0].restart or self.wire[1].restart):
            self.wire[0], self.wire[1] = self.wire[1], self.wire[0]
        sent = self.wire[0] if fault == "duplicate" else self.wire.pop(0)
        # A venue's sequence loses updates; whole books are answers to our own requests.
        if fault != "drop" or sent.whole:
            self.deliver(sent)

    def deliver(self, sent: Sent) -> None:
        try:
            quotes = self.parser_parse(sent.frame)
        except BookInvalid as exc:
            assert exc.symbol == "BTC-USDT"
            self.invalidate()
            return
        assert not (quotes and self.awaiting_whole_book and not sent.whole), (
            "a discarded book was served again before a whole new book arrived"
        )
        self.serve(quotes, sent.key)

    def serve(self, quotes: list[Quote], key: tuple[int, int]) -> None:
        if quotes:
            (quote,) = quotes
            self.served, self.served_key = quote, (key[0], quote.seq or 0)
            self.awaiting_whole_book = False

    def invalidate(self) -> None:
        self.invalidations += 1
        self.served = self.served_key = None
        self.awaiting_whole_book = True

    def parser_parse(self, frame: bytes) -> list[Quote]:
        raise NotImplementedError

    @invariant()
    def served_book_is_the_true_book_at_its_sequence(self) -> None:
        if self.served is None:
            return
        assert self.served_key is not None
        true_bids, true_asks = top_of(self.history[self.served_key], DEPTH)
        assert self.served.bids == true_bids
        assert self.served.asks == true_asks
        assert (self.served.bid, self.served.ask) == (true_bids[0][0], true_asks[0][0])
        assert not self.served.crossed


class BinanceDepthMachine(VenueWire):
    """Binance: diff events U..u over the wire, REST snapshots on request, stale snapshots too."""

    def __init__(self) -> None:
        super().__init__()
        self.parser = DepthParser({"BTCUSDT": "BTC-USDT"}, DEPTH, buffer_events=8)
        self.requested = False

    def parser_parse(self, frame: bytes) -> list[Quote]:
        try:
            return self.parser.parse(frame, self.now())
        finally:
            self.take_requests()

    def take_requests(self) -> None:
        requests = self.parser.snapshot_requests()
        assert requests in ([], ["BTC-USDT"])
        assert not (requests and self.requested), "a snapshot was asked for twice"
        self.requested = self.requested or bool(requests)

    @rule(changes=level_changes[0], ask_changes=level_changes[1], width=st.integers(1, 3))
    def venue_update(self, changes: list[tuple[Decimal, Decimal]], ask_changes: Any, width: int) -> None:
        first_id = self.last_id + 1
        self.last_id += width
        apply_changes(self.truth, changes, ask_changes)
        self.record_truth()
        data = {
            "e": "depthUpdate",
            "E": 1672515782136 + self.last_id,
            "s": "BTCUSDT",
            "U": first_id,
            "u": self.last_id,
            "b": wire_levels(changes),
            "a": wire_levels(ask_changes),
        }
        frame = orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data})
        self.wire.append(Sent(frame, (0, self.last_id)))

    @precondition(lambda self: self.requested)
    @rule(data=st.data())
    def answer_snapshot(self, data: st.DataObject) -> None:
        # Mostly the current book; sometimes an older one (a lagging REST replica).
        ids = sorted(update_id for _, update_id in self.history)
        snapshot_id = data.draw(st.sampled_from([self.last_id, self.last_id, *ids[-4:]]))
        bids, asks = self.history[(0, snapshot_id)]
        body = {"lastUpdateId": snapshot_id, "bids": book_levels(bids), "asks": book_levels(asks)}
        self.requested = False
        try:
            quotes = self.parser.load_snapshot("BTC-USDT", orjson.dumps(body), self.now())
        except BookInvalid:
            self.invalidate()
            quotes = []
        finally:
            self.take_requests()
        self.serve(quotes, (0, 0))

    @rule()
    def settle(self) -> None:
        """With a clean wire and a fresh snapshot, the book catches up with the venue."""
        self.venue_update([], [], 1)
        while self.wire:
            self.deliver(self.wire.pop(0))
        if self.requested:
            bids, asks = self.truth
            body = {"lastUpdateId": self.last_id, "bids": book_levels(bids), "asks": book_levels(asks)}
            self.requested = False
            self.serve(self.parser.load_snapshot("BTC-USDT", orjson.dumps(body), self.now()), (0, 0))
            self.take_requests()
        assert self.served is not None and self.served.seq == self.last_id

    @invariant()
    def quote_time_is_the_event_time(self) -> None:
        if self.served is not None and self.served.exchange_ns is not None:
            assert self.served.exchange_ns == (1672515782136 + self.served.seq) * 1_000_000  # type: ignore[operator]


class BybitDepthMachine(VenueWire):
    """Bybit: snapshot + deltas with u continuity, resubscription snapshots, service restarts (u == 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.parser = OrderbookParser({"BTCUSDT": "BTC-USDT"}, DEPTH)

    @initialize()
    def subscribe(self) -> None:
        self.push_snapshot()

    def parser_parse(self, frame: bytes) -> list[Quote]:
        return self.parser.parse(frame, self.now())

    def push(self, kind: str, bids: list[list[str]], asks: list[list[str]]) -> None:
        data = {"s": "BTCUSDT", "b": bids, "a": asks, "u": self.last_id, "seq": 7961638724 + self.last_id}
        message = {"topic": "orderbook.50.BTCUSDT", "type": kind, "ts": 1672304484978, "data": data, "cts": 1}
        restart = self.last_id == 1
        self.wire.append(
            Sent(orjson.dumps(message), (self.epoch, self.last_id), kind == "snapshot" or restart, restart)
        )

    def push_snapshot(self) -> None:
        self.push("snapshot", book_levels(self.truth[0]), book_levels(self.truth[1]))

    def invalidate(self) -> None:
        super().invalidate()
        self.push_snapshot()  # the runner resubscribes; Bybit answers with the current book

    def serve(self, quotes: list[Quote], key: tuple[int, int]) -> None:
        if quotes:
            assert quotes[0].seq == key[1]
        super().serve(quotes, key)

    @rule(changes=level_changes[0], ask_changes=level_changes[1])
    def venue_delta(self, changes: list[tuple[Decimal, Decimal]], ask_changes: Any) -> None:
        self.last_id += 1
        apply_changes(self.truth, changes, ask_changes)
        self.record_truth()
        self.push("delta", wire_levels(changes), wire_levels(ask_changes))

    @rule()
    def venue_snapshot(self) -> None:
        self.push_snapshot()

    @precondition(lambda self: not self.wire)
    @rule(changes=level_changes[0], ask_changes=level_changes[1], kind=st.sampled_from(["snapshot", "delta"]))
    def venue_restart(self, changes: list[tuple[Decimal, Decimal]], ask_changes: Any, kind: str) -> None:
        self.truth = ({BID_ANCHOR: D("3")}, {ASK_ANCHOR: D("3")})
        apply_changes(self.truth, changes, ask_changes)
        self.epoch += 1
        self.last_id = 1
        self.record_truth()
        self.push(kind, book_levels(self.truth[0]), book_levels(self.truth[1]))

    @rule()
    def settle(self) -> None:
        """With a clean wire, the book catches up with the venue."""
        self.venue_delta([], [])
        while self.wire:
            self.deliver(self.wire.pop(0))
        assert self.served is not None and self.served_key == (self.epoch, self.last_id)


TestBinanceDepthModel = BinanceDepthMachine.TestCase
TestBinanceDepthModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestBybitDepthModel = BybitDepthMachine.TestCase
TestBybitDepthModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
