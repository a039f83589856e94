"""Coinbase Advanced Trade adapter and parsers against the documented payloads and sequence rules."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve

from connectors.book import BookInvalid, quote_rejects
from connectors.coinbase import CoinbaseAdapter, Level2Parser, TickerParser
from connectors.coinbase.parse import rfc3339_ns
from connectors.errors import ParseError
from connectors.stream import StreamRunner
from connectors.types import Quote

VENUE = "coinbase"
PRODUCTS = {"BTC-USD": "BTC-USD", "ETH-USD": "ETH-USD"}
D = Decimal
STAMP = "2023-02-09T20:32:50.714964855Z"
STAMP_NS = 1675974770714964855


def envelope(channel: str, sequence_num: int, events: list[dict[str, Any]], timestamp: str = STAMP) -> bytes:
    return orjson.dumps(
        {
            "channel": channel,
            "client_id": "",
            "timestamp": timestamp,
            "sequence_num": sequence_num,
            "events": events,
        }
    )


def l2(
    sequence_num: int, kind: str, product: str, bids: list[tuple[str, str]], offers: list[tuple[str, str]]
) -> bytes:
    """Build an `l2_data` message of the documented shape with one event."""
    updates = [
        {
            "side": side,
            "event_time": "2023-02-09T20:32:50.714964855Z",
            "price_level": price,
            "new_quantity": qty,
        }
        for side, levels in (("bid", bids), ("offer", offers))
        for price, qty in levels
    ]
    return envelope("l2_data", sequence_num, [{"type": kind, "product_id": product, "updates": updates}])


def heartbeat(sequence_num: int) -> bytes:
    return envelope(
        "heartbeats", sequence_num, [{"current_time": "x", "heartbeat_counter": str(sequence_num)}]
    )


def ticker(sequence_num: int, product: str, bid: str, ask: str) -> dict[str, Any]:
    return {
        "type": "ticker",
        "product_id": product,
        "price": bid,
        "best_bid": bid,
        "best_bid_quantity": "1",
        "best_ask": ask,
        "best_ask_quantity": "2",
    }


def tickers(sequence_num: int, *entries: dict[str, Any]) -> bytes:
    return envelope("ticker", sequence_num, [{"type": "update", "tickers": list(entries)}])


@pytest.fixture
def level2() -> Level2Parser:
    return Level2Parser(PRODUCTS, depth=3)


def both_synced(parser: Level2Parser) -> None:
    parser.parse(l2(0, "snapshot", "BTC-USD", [("100", "1")], [("101", "1")]), 1)
    parser.parse(l2(1, "snapshot", "ETH-USD", [("10", "1")], [("11", "1")]), 1)


# --- adapter -------------------------------------------------------------------------------------


def test_default_endpoint_is_advanced_trade_market_data() -> None:
    assert CoinbaseAdapter(["BTC-USD"]).connect_url() == "wss://advanced-trade-ws.coinbase.com"


def test_top_of_book_feed_subscribes_level2_not_ticker_and_heartbeats_in_the_documented_shapes(
    recorded: Any,
) -> None:
    documented = [orjson.loads(line) for line in recorded.lines(VENUE, "coinbase-ws-control.jsonl")]
    adapter = CoinbaseAdapter(["ETH-USD", "ETH-EUR"])

    level2_sub, heartbeats_sub = (orjson.loads(m) for m in adapter.subscribe_messages())

    # ticker moves on trades only; level2 gives the best bid/offer on every change
    assert level2_sub == documented[0]
    assert heartbeats_sub == {"type": "subscribe", "channel": "heartbeats"}
    assert heartbeats_sub.keys() == documented[2].keys() - {"jwt"}
    assert isinstance(adapter.new_parser(), Level2Parser)


def test_depth_feed_subscribes_level2_as_documented(recorded: Any) -> None:
    documented = orjson.loads(recorded.lines(VENUE, "coinbase-ws-control.jsonl")[0])
    adapter = CoinbaseAdapter(["ETH-USD", "ETH-EUR"], depth=10)

    assert orjson.loads(adapter.subscribe_messages()[0]) == documented
    assert isinstance(adapter.new_parser(), Level2Parser)


def test_book_resync_unsubscribes_and_resubscribes_the_product(recorded: Any) -> None:
    documented_unsubscribe = orjson.loads(recorded.lines(VENUE, "coinbase-ws-control.jsonl")[1])

    for depth in (5, None):
        messages = CoinbaseAdapter(["ETH-USD", "ETH-EUR"], depth=depth).resync_messages("ETH-EUR")

        assert messages is not None
        assert [orjson.loads(m) for m in messages] == [
            {**documented_unsubscribe, "product_ids": ["ETH-EUR"]},
            {"type": "subscribe", "product_ids": ["ETH-EUR"], "channel": "level2"},
        ]


def test_heartbeats_channel_is_the_keepalive_no_app_ping() -> None:
    adapter = CoinbaseAdapter(["BTC-USD"])

    assert adapter.keepalive_message() is None
    assert adapter.keepalive_interval_s is None


def test_usd_and_usdc_products_stay_distinct_symbols() -> None:
    (message, _) = CoinbaseAdapter(["BTC-USD", "BTC-USDC"]).subscribe_messages()

    assert orjson.loads(message)["product_ids"] == ["BTC-USD", "BTC-USDC"]


# --- timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-02-09T20:32:50.714964855Z", 1675974770714964855),
        ("2023-10-06T17:35:55.440295Z", 1696613755440295000),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00.5+01:00", 500_000_000),
    ],
)
def test_rfc3339_times_keep_every_nanosecond(text: str, expected: int) -> None:
    assert rfc3339_ns(text, "t") == expected


@pytest.mark.parametrize(
    "text", ["2023-02-09", "2023-02-30T00:00:00Z", "2023-02-09T20:32:50.1234567890Z", 17]
)
def test_malformed_times_are_parse_errors(text: object) -> None:
    with pytest.raises(ParseError):
        rfc3339_ns(text, "t")


# --- ticker --------------------------------------------------------------------------------------


def test_documented_ticker_gives_its_best_bid_and_ask(recorded: Any, received_ns: int) -> None:
    assert TickerParser(PRODUCTS).parse(recorded.text(VENUE, "coinbase-ticker.json"), received_ns) == [
        Quote(
            venue="coinbase",
            symbol="BTC-USD",
            bid=D("21931.98"),
            bid_qty=D("8000.21"),
            ask=D("21933.98"),
            ask_qty=D("8038.07770938"),
            exchange_ns=1675974637167359596,
            received_ns=received_ns,
            seq=0,
        )
    ]


def test_documented_heartbeat_gives_nothing(recorded: Any) -> None:
    assert TickerParser(PRODUCTS).parse(recorded.text(VENUE, "coinbase-heartbeats.json"), 1) == []
    assert Level2Parser(PRODUCTS, 1).parse(recorded.text(VENUE, "coinbase-heartbeats.json"), 1) == []


def test_out_of_order_ticker_is_ignored() -> None:
    parser = TickerParser(PRODUCTS)
    parser.parse(tickers(5, ticker(5, "BTC-USD", "100", "101")), 1)

    assert parser.parse(tickers(4, ticker(4, "BTC-USD", "99", "100")), 2) == []
    assert parser.parse(tickers(7, ticker(7, "BTC-USD", "99", "100")), 3)[0].seq == 7


def test_crossed_ticker_is_withdrawn_once_and_the_other_products_quotes_follow() -> None:
    parser = TickerParser(PRODUCTS)

    with pytest.raises(BookInvalid) as raised:
        parser.parse(tickers(1, ticker(1, "BTC-USD", "101", "100"), ticker(1, "ETH-USD", "10", "11")), 1)
    held_back = parser.parse(heartbeat(2), 2)
    still_crossed = parser.parse(tickers(3, ticker(3, "BTC-USD", "101", "101")), 3)

    assert (raised.value.symbol, raised.value.reason) == ("BTC-USD", "crossed")
    assert [(q.symbol, q.bid) for q in held_back] == [("ETH-USD", D("10"))]
    assert still_crossed == []


def test_error_message_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="failure to subscribe"):
        TickerParser(PRODUCTS).parse(b'{"type": "error", "message": "failure to subscribe"}', 1)


# --- level2 --------------------------------------------------------------------------------------


def test_documented_snapshot_has_only_bids_so_it_waits_for_an_offer(
    level2: Level2Parser, recorded: Any
) -> None:
    snapshot = level2.parse(recorded.text(VENUE, "coinbase-l2_data-snapshot.json"), 1)
    (quote,) = level2.parse(l2(1, "update", "BTC-USD", [], [("21922.5", "0.5")]), 2)

    assert snapshot == []
    assert quote == Quote(
        venue="coinbase",
        symbol="BTC-USD",
        bid=D("21921.73"),
        bid_qty=D("0.06317902"),
        ask=D("21922.5"),
        ask_qty=D("0.5"),
        exchange_ns=STAMP_NS,
        received_ns=2,
        seq=1,
        bids=((D("21921.73"), D("0.06317902")), (D("21921.3"), D("0.02"))),
        asks=((D("21922.5"), D("0.5")),),
    )


def test_top_of_book_mode_gives_the_top_level_after_every_change_of_the_book() -> None:
    parser = Level2Parser(PRODUCTS, depth=None)
    (first,) = parser.parse(l2(0, "snapshot", "BTC-USD", [("100", "1"), ("99", "2")], [("101", "1")]), 1)

    (new_best,) = parser.parse(l2(1, "update", "BTC-USD", [("100.5", "3")], []), 2)
    (deeper,) = parser.parse(l2(2, "update", "BTC-USD", [("99", "0")], [("102", "4")]), 3)
    (best_gone,) = parser.parse(l2(3, "update", "BTC-USD", [("100.5", "0")], []), 4)

    assert [(q.bid, q.bid_qty, q.ask, q.seq) for q in (first, new_best, deeper, best_gone)] == [
        (D("100"), D("1"), D("101"), 0),
        (D("100.5"), D("3"), D("101"), 1),
        (D("100.5"), D("3"), D("101"), 2),  # the top confirmed current
        (D("100"), D("1"), D("101"), 3),
    ]
    assert all(q.bids == () and q.asks == () for q in (first, new_best, deeper, best_gone))


def test_stale_level2_message_is_dropped_and_counted(level2: Level2Parser) -> None:
    both_synced(level2)
    before = quote_rejects(VENUE).out_of_order

    assert level2.parse(l2(1, "update", "BTC-USD", [("100", "9")], []), 2) == []
    assert level2.parse(heartbeat(0), 2) == []

    assert quote_rejects(VENUE).out_of_order == before + 1


def test_update_quantities_are_absolute_and_zero_deletes(level2: Level2Parser) -> None:
    level2.parse(l2(0, "snapshot", "BTC-USD", [("100", "1"), ("99", "2")], [("101", "1")]), 1)

    (quote,) = level2.parse(l2(1, "update", "BTC-USD", [("100", "0"), ("99", "5")], [("101", "3")]), 2)

    assert (quote.bids, quote.asks) == (((D("99"), D("5")),), ((D("101"), D("3")),))


def test_sequence_jump_withdraws_every_book_one_report_per_frame(level2: Level2Parser) -> None:
    both_synced(level2)

    reported = []
    with pytest.raises(BookInvalid) as first:
        level2.parse(l2(5, "update", "BTC-USD", [("100", "2")], []), 2)
    reported.append(first.value)
    with pytest.raises(BookInvalid) as second:
        level2.parse(heartbeat(6), 3)
    reported.append(second.value)
    skipped = level2.parse(l2(7, "update", "ETH-USD", [("10", "9")], []), 4)

    assert sorted((r.symbol, r.reason) for r in reported) == [("BTC-USD", "gap"), ("ETH-USD", "gap")]
    assert "jumped from 1 to 5" in first.value.detail
    assert skipped == []


def test_a_new_snapshot_after_a_jump_serves_that_product_again(level2: Level2Parser) -> None:
    both_synced(level2)
    with pytest.raises(BookInvalid):
        level2.parse(heartbeat(9), 2)

    with pytest.raises(BookInvalid):
        level2.parse(l2(10, "snapshot", "BTC-USD", [("200", "1")], [("201", "1")]), 3)
    (served,) = level2.parse(heartbeat(11), 4)

    # That frame raised ETH-USD's report; BTC-USD's new book is served with the next one.
    assert (served.symbol, served.bid, served.seq) == ("BTC-USD", D("200"), 10)


def test_lower_sequence_num_is_out_of_order_and_ignored(level2: Level2Parser) -> None:
    both_synced(level2)
    (applied,) = level2.parse(l2(2, "update", "BTC-USD", [("100", "7")], []), 2)

    duplicate = level2.parse(l2(2, "update", "BTC-USD", [("100", "8")], []), 3)
    (after,) = level2.parse(l2(3, "update", "BTC-USD", [], [("101", "2")]), 4)

    assert duplicate == []
    assert applied.bid_qty == after.bid_qty == D("7")


def test_update_before_any_snapshot_asks_for_one(level2: Level2Parser) -> None:
    with pytest.raises(BookInvalid) as raised:
        level2.parse(l2(0, "update", "BTC-USD", [("100", "1")], []), 1)
    ignored = level2.parse(l2(1, "update", "BTC-USD", [("100", "2")], [("101", "1")]), 2)
    (quote,) = level2.parse(l2(2, "snapshot", "BTC-USD", [("100", "3")], [("101", "1")]), 3)

    assert raised.value.reason == "snapshot"
    assert ignored == []
    assert quote.bid_qty == D("3")


def test_crossing_update_is_withdrawn_and_a_crossed_snapshot_is_held(level2: Level2Parser) -> None:
    both_synced(level2)

    with pytest.raises(BookInvalid) as raised:
        level2.parse(l2(2, "update", "BTC-USD", [("101.5", "1")], []), 2)
    held = level2.parse(l2(3, "snapshot", "BTC-USD", [("101.5", "1"), ("100", "1")], [("101", "1")]), 3)
    (uncrossed,) = level2.parse(l2(4, "update", "BTC-USD", [("101.5", "0")], []), 4)

    assert raised.value.reason == "crossed"
    assert held == []
    assert (uncrossed.bid, uncrossed.ask) == (D("100"), D("101"))


@pytest.mark.parametrize(
    "frame",
    [
        b"{",
        b'"l2_data"',
        b'{"channel": "l2_data", "timestamp": "2023-02-09T20:32:50Z", "events": []}',
        envelope("l2_data", 2, [{"type": "update", "product_id": "BTC-USD", "updates": [{"side": "buy"}]}]),
        envelope("l2_data", 2, [{"type": "delta", "product_id": "BTC-USD", "updates": []}]),
        envelope("l2_data", 2, [{"type": "update", "product_id": "SOL-USD", "updates": []}]),
        l2(2, "update", "BTC-USD", [("100", "-1")], []),
        envelope("level2", 2, []),
        envelope("l2_data", 2, [], timestamp="now"),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "no-sequence-num",
        "unknown-side",
        "unknown-event-type",
        "unconfigured-product",
        "negative-quantity",
        "unsubscribed-channel",
        "bad-timestamp",
    ],
)
def test_garbage_is_a_parse_error_and_the_lost_message_counts_as_a_gap(
    level2: Level2Parser, frame: bytes
) -> None:
    both_synced(level2)

    with pytest.raises(ParseError) as raised:
        level2.parse(frame, 2)
    with pytest.raises(BookInvalid) as gap:
        level2.parse(heartbeat(3), 3)

    assert not isinstance(raised.value, BookInvalid)
    assert gap.value.reason == "gap"


# --- property: never serve a book that differs from the venue's ----------------------------------------


class Venue:
    """A Coinbase level2 feed for two products: numbers every message and remembers each book."""

    def __init__(self) -> None:
        self.sequence_num = -1
        self.books: dict[str, dict[str, dict[str, str]]] = {p: {"bid": {}, "offer": {}} for p in PRODUCTS}
        self.history: dict[tuple[str, int], Any] = {}

    def snapshot(self, product: str) -> bytes:
        book = self.books[product]
        return self._message("snapshot", product, list(book["bid"].items()), list(book["offer"].items()))

    def update(self, product: str, changes: list[tuple[str, int, int]]) -> bytes:
        bids, offers = [], []
        for side, index, size in changes:
            price = str(100 - index) if side == "bid" else str(100 + index)
            (bids if side == "bid" else offers).append((price, str(size)))
            if size:
                self.books[product][side][price] = str(size)
            else:
                self.books[product][side].pop(price, None)
        return self._message("update", product, bids, offers)

    def _message(self, kind: str, product: str, bids: list[Any], offers: list[Any]) -> bytes:
        self.sequence_num += 1
        for name, book in self.books.items():
            self.history[(name, self.sequence_num)] = copy.deepcopy(book)
        return l2(self.sequence_num, kind, product, bids, offers)


def top(book: dict[str, dict[str, str]], depth: int) -> tuple[Any, ...]:
    bids = sorted(((D(p), D(q)) for p, q in book["bid"].items()), reverse=True)[:depth]
    asks = sorted((D(p), D(q)) for p, q in book["offer"].items())[:depth]
    return tuple(bids), tuple(asks)


CHANGES = st.lists(
    st.tuples(st.sampled_from(["bid", "offer"]), st.integers(1, 15), st.integers(0, 3)), max_size=4
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(PRODUCTS)),
            CHANGES,
            st.sampled_from(["ok", "ok", "ok", "drop", "duplicate", "swap"]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_served_books_always_equal_the_venues_book_at_their_sequence_num(
    steps: list[tuple[str, list[tuple[str, int, int]], str]],
) -> None:
    venue = Venue()
    parser = Level2Parser(PRODUCTS, depth=3)
    inbox = [venue.snapshot(product) for product in sorted(PRODUCTS)]
    for product, changes, fault in steps:
        message = venue.update(product, changes)
        inbox.extend({"ok": [message], "drop": [], "duplicate": [message, message], "swap": [message]}[fault])
        if fault == "swap" and len(inbox) >= 2:
            inbox[-1], inbox[-2] = inbox[-2], inbox[-1]
    inbox.append(venue.snapshot("BTC-USD"))  # something to drain pending reports with

    served: list[Quote] = []
    invalid = 0
    while inbox:
        try:
            served.extend(parser.parse(inbox.pop(0), 0))
        except BookInvalid as exc:
            invalid += 1
            inbox.insert(0, venue.snapshot(exc.symbol))  # the resubscription's answer

    for quote in served:
        assert (quote.bids, quote.asks) == top(venue.history[(quote.symbol, quote.seq)], 3)
    if all(fault == "ok" for _, _, fault in steps):
        assert invalid == 0


# --- loopback: the runner resubscribes after a jump --------------------------------------------------


async def test_runner_resubscribes_level2_after_a_sequence_jump_and_serves_the_new_snapshot() -> None:
    received: list[Any] = []
    quotes: list[Quote] = []
    invalid: list[tuple[str, str, str]] = []
    resynced = asyncio.Event()

    async def coinbase(ws: ServerConnection) -> None:
        received.extend([orjson.loads(await ws.recv()), orjson.loads(await ws.recv())])
        await ws.send(l2(0, "snapshot", "BTC-USD", [("100", "1")], [("101", "1")]))
        await ws.send(heartbeat(1))
        await ws.send(l2(3, "update", "BTC-USD", [("100", "2")], []))  # sequence_num 2 was lost
        received.extend([orjson.loads(await ws.recv()), orjson.loads(await ws.recv())])
        await ws.send(l2(4, "update", "BTC-USD", [("100", "3")], []))  # in flight: skipped
        await ws.send(l2(5, "snapshot", "BTC-USD", [("200", "1")], [("201", "1")]))
        await ws.wait_closed()

    def on_quote(quote: Quote) -> None:
        quotes.append(quote)
        if quote.seq == 5:
            resynced.set()

    async with asyncio.timeout(10), serve(coinbase, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        adapter = CoinbaseAdapter(["BTC-USD"], ws_url=f"ws://127.0.0.1:{port}", depth=2)
        runner = StreamRunner(adapter, on_quote, on_book_invalid=lambda *args: invalid.append(args))
        task = asyncio.create_task(runner.run(), name="coinbase-runner-under-test")
        try:
            await resynced.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    assert received == [
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"},
        {"type": "subscribe", "channel": "heartbeats"},
        {"type": "unsubscribe", "product_ids": ["BTC-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"},
    ]
    assert invalid == [("coinbase", "BTC-USD", "gap")]
    assert [(quote.seq, quote.bid) for quote in quotes] == [(0, D("100")), (5, D("200"))]
