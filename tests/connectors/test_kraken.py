"""Kraken WebSocket v2 adapter and parsers against the documented payloads and the book checksum."""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve

from connectors.book import BookInvalid
from connectors.errors import ParseError
from connectors.kraken import BookParser, KrakenAdapter, TickerParser
from connectors.kraken.book import find_precision, subscription_depth
from connectors.kraken.checksum import book_checksum
from connectors.kraken.parse import decode
from connectors.stream import StreamRunner
from connectors.types import Level, Quote

VENUE = "kraken"
PAIRS = {"MATIC/USD": "MATIC-USD", "ALGO/USD": "ALGO-USD"}
D = Decimal
STAMP_NS = 1696613755440295000  # 2023-10-06T17:35:55.440295Z


def number(value: Decimal) -> str:
    """Write a decimal as Kraken does: a JSON number without trailing zeros."""
    return format(value.normalize(), "f")


def book_message(
    kind: str,
    symbol: str,
    bids: list[Level],
    asks: list[Level],
    checksum: int,
    timestamp: str = "2023-10-06T17:35:55.440295Z",
) -> str:
    """Build a `book` message of the documented shape, numbers written as JSON numbers."""

    def side(levels: list[Level]) -> str:
        return ",".join(f'{{"price":{number(p)},"qty":{number(q)}}}' for p, q in levels)

    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":[{side(bids)}],'
        f'"asks":[{side(asks)}],"checksum":{checksum},"timestamp":"{timestamp}"}}]}}'
    )


def crc(bids: list[Level], asks: list[Level], price_decimals: int = 4, qty_decimals: int = 8) -> int:
    return book_checksum(bids, asks, price_decimals=price_decimals, qty_decimals=qty_decimals)


def levels(side: list[tuple[str, str]]) -> list[Level]:
    return [(D(p), D(q)) for p, q in side]


@pytest.fixture
def books() -> BookParser:
    return BookParser(PAIRS, depth=10)


@pytest.fixture
def documented(recorded: Any) -> dict[str, Any]:
    """Return the documented snapshot's data, numbers as Decimals."""
    data: dict[str, Any] = decode(recorded.text(VENUE, "kraken-book-snapshot.json"))["data"][0]
    return data


def doc_levels(data: dict[str, Any], side: str) -> list[Level]:
    return [(level["price"], level["qty"]) for level in data[side]]


# --- adapter -------------------------------------------------------------------------------------


def test_default_endpoint_is_the_v2_public_websocket() -> None:
    assert KrakenAdapter(["BTC-USD"]).connect_url() == "wss://ws.kraken.com/v2"


def test_top_of_book_feed_subscribes_ticker_with_the_bbo_trigger() -> None:
    (message,) = KrakenAdapter(["BTC-USD", "ETH-USD"]).subscribe_messages()

    assert orjson.loads(message) == {
        "method": "subscribe",
        "params": {
            "channel": "ticker",
            "symbol": ["BTC/USD", "ETH/USD"],
            "event_trigger": "bbo",
            "snapshot": True,
        },
    }
    assert isinstance(KrakenAdapter(["BTC-USD"]).new_parser(), TickerParser)


def test_depth_feed_subscribes_book_at_the_smallest_offered_depth(recorded: Any) -> None:
    documented = orjson.loads(recorded.lines(VENUE, "kraken-ws-control.jsonl")[0])
    adapter = KrakenAdapter(["ALGO-USD", "MATIC-USD"], depth=12)

    request = orjson.loads(adapter.subscribe_messages()[0])

    assert request == {
        "method": "subscribe",
        "params": {"channel": "book", "symbol": ["ALGO/USD", "MATIC/USD"], "depth": 25, "snapshot": True},
    }
    assert request["params"].keys() >= documented["params"].keys()
    assert isinstance(adapter.new_parser(), BookParser)


@pytest.mark.parametrize(("depth", "offered"), [(1, 10), (10, 10), (11, 25), (100, 100), (501, 1000)])
def test_subscription_depth_is_the_smallest_offered_that_holds_depth(depth: int, offered: int) -> None:
    assert subscription_depth(depth) == offered


def test_depth_above_1000_is_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        KrakenAdapter(["BTC-USD"], depth=1001)


def test_book_resync_unsubscribes_and_resubscribes_the_pair() -> None:
    messages = KrakenAdapter(["BTC-USD", "ETH-USD"], depth=10).resync_messages("ETH-USD")

    assert messages is not None
    assert [orjson.loads(m) for m in messages] == [
        {"method": "unsubscribe", "params": {"channel": "book", "symbol": ["ETH/USD"], "depth": 10}},
        {
            "method": "subscribe",
            "params": {"channel": "book", "symbol": ["ETH/USD"], "depth": 10, "snapshot": True},
        },
    ]
    assert KrakenAdapter(["ETH-USD"]).resync_messages("ETH-USD") == []


def test_keepalive_is_the_documented_app_level_ping(recorded: Any) -> None:
    documented = orjson.loads(recorded.lines(VENUE, "kraken-ws-control.jsonl")[2])
    adapter = KrakenAdapter(["BTC-USD"])

    ping = adapter.keepalive_message()

    assert ping is not None
    assert orjson.loads(ping) == {"method": documented["method"]}
    assert adapter.keepalive_interval_s is not None and adapter.keepalive_interval_s < 60


def test_rest_era_xbt_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not XBT: use 'BTC-USD'"):
        KrakenAdapter(["XBT-USD"])


# --- control messages ----------------------------------------------------------------------------


def test_documented_ack_pong_and_heartbeat_give_nothing(recorded: Any) -> None:
    _, ack, _, pong, heartbeat = recorded.lines(VENUE, "kraken-ws-control.jsonl")

    for parser in (TickerParser(PAIRS), BookParser(PAIRS, 10)):
        assert [parser.parse(frame, 1) for frame in (ack, pong, heartbeat)] == [[], [], []]


def test_status_message_gives_nothing() -> None:
    status = (
        '{"channel":"status","type":"update",'
        '"data":[{"api_version":"v2","system":"online","version":"2.0.0"}]}'
    )

    assert TickerParser(PAIRS).parse(status, 1) == []


def test_failed_subscription_names_the_error() -> None:
    frame = (
        '{"error":"Currency pair not supported XBT/USD","method":"subscribe",'
        '"success":false,"symbol":"XBT/USD"}'
    )

    with pytest.raises(ParseError, match="Currency pair not supported"):
        BookParser(PAIRS, 10).parse(frame, 1)


# --- ticker --------------------------------------------------------------------------------------


def test_documented_ticker_snapshot_and_update_keep_every_digit(recorded: Any, received_ns: int) -> None:
    parser = TickerParser(PAIRS)
    stamp_ns = 1695632671742648000  # 2023-09-25T09:04:31.742648Z

    snapshot = parser.parse(recorded.text(VENUE, "kraken-ticker-snapshot.json"), received_ns)
    update = parser.parse(recorded.text(VENUE, "kraken-ticker-update.json"), received_ns + 1)

    assert snapshot == [
        Quote(
            venue="kraken",
            symbol="ALGO-USD",
            bid=D("0.10025"),
            bid_qty=D("740.0"),
            ask=D("0.10036"),
            ask_qty=D("1361.44813783"),
            exchange_ns=stamp_ns,
            received_ns=received_ns,
            seq=None,
        )
    ]
    assert [(q.ask, q.ask_qty, q.received_ns) for q in update] == [
        (D("0.10035"), D("740.0"), received_ns + 1)
    ]


def test_crossed_ticker_is_withdrawn_once() -> None:
    parser = TickerParser(PAIRS)
    frame = (
        '{"channel":"ticker","type":"update",'
        '"data":[{"symbol":"ALGO/USD","bid":%s,"bid_qty":1,"ask":%s,"ask_qty":1}]}'
    )

    with pytest.raises(BookInvalid) as raised:
        parser.parse(frame % ("0.2", "0.1"), 1)
    still = parser.parse(frame % ("0.2", "0.2"), 2)
    (quote,) = parser.parse(frame % ("0.1", "0.2"), 3)

    assert (raised.value.symbol, raised.value.reason) == ("ALGO-USD", "crossed")
    assert still == []
    assert (quote.bid, quote.exchange_ns) == (D("0.1"), None)


@pytest.mark.parametrize(
    "frame",
    [
        '{"channel":"ticker","type":"update","data":[{"symbol":"ALGO/USD","bid":"0.1","bid_qty":1,"ask":0.2,"ask_qty":1}]}',
        '{"channel":"ticker","type":"update","data":[{"symbol":"ALGO/USD","bid":NaN,"bid_qty":1,"ask":0.2,"ask_qty":1}]}',
        '{"channel":"ticker","type":"update","data":[{"symbol":"ALGO/USD","bid":true,"bid_qty":1,"ask":0.2,"ask_qty":1}]}',
        '{"channel":"ticker","type":"update","data":[{"symbol":"DOT/USD","bid":0.1,"bid_qty":1,"ask":0.2,"ask_qty":1}]}',
        '{"channel":"ticker","type":"update","data":{}}',
        '{"channel":"trade","type":"update","data":[]}',
        '{"method":"subscribe"',
        "[]",
    ],
    ids=[
        "string-price",
        "nan",
        "bool",
        "unconfigured",
        "data-object",
        "unsubscribed",
        "not-json",
        "not-object",
    ],
)
def test_garbage_is_a_parse_error(frame: str) -> None:
    with pytest.raises(ParseError) as raised:
        TickerParser(PAIRS).parse(frame, 1)

    assert not isinstance(raised.value, BookInvalid)


def test_numbers_decode_as_exact_decimals_not_floats() -> None:
    assert decode('{"p": 0.10000000000000001, "q": 1e-8, "n": 7}') == {
        "p": D("0.10000000000000001"),
        "q": D("1e-8"),
        "n": 7,
    }


# --- book: the documented example and its checksums ------------------------------------------------


def test_documented_checksums_reproduce_with_the_pairs_4_and_8_decimals(
    recorded: Any, documented: dict[str, Any]
) -> None:
    expected = recorded.json(VENUE, "test-vectors.json")["kraken_v2_book_checksum"]
    bids, asks = doc_levels(documented, "bids"), doc_levels(documented, "asks")
    decimals = {"price_decimals": expected["price_decimals"], "qty_decimals": expected["qty_decimals"]}

    after_snapshot = book_checksum(bids, asks, **decimals)
    bids[-1] = (D("0.5657"), D("1098.3947558"))
    after_update = book_checksum(bids, asks, **decimals)

    assert after_snapshot == expected["expected_after_snapshot"] == documented["checksum"]
    assert after_update == expected["expected_after_applying_update"]


def test_pair_precision_is_pinned_from_the_snapshot_checksum(documented: dict[str, Any]) -> None:
    bids, asks = doc_levels(documented, "bids"), doc_levels(documented, "asks")

    assert find_precision(bids, asks, 2439117997) == (4, 8)
    assert find_precision(bids, asks, 2439117998) is None


def test_precision_above_what_the_numbers_show_is_found() -> None:
    # Every number here ends in zeros the JSON drops: the checksum still tells 2 and 8 decimals.
    bids, asks = levels([("99.5", "1.5")]), levels([("100.5", "2")])

    assert find_precision(bids, asks, crc(bids, asks, 2, 8)) == (2, 8)


def test_documented_snapshot_then_update_verify_and_serve_the_book(
    books: BookParser, recorded: Any, received_ns: int
) -> None:
    (snapshot,) = books.parse(recorded.text(VENUE, "kraken-book-snapshot.json"), received_ns)
    (update,) = books.parse(recorded.text(VENUE, "kraken-book-update.json"), received_ns + 1)

    assert (snapshot.bid, snapshot.bid_qty, snapshot.ask, snapshot.ask_qty) == (
        D("0.5666"),
        D("4831.75496356"),
        D("0.5668"),
        D("4410.79769741"),
    )
    assert len(snapshot.bids) == len(snapshot.asks) == 10
    assert snapshot.asks[2] == (D("0.567"), D("49844.89424998"))
    assert (snapshot.exchange_ns, snapshot.seq) == (STAMP_NS, None)
    assert update.bids[-1] == (D("0.5657"), D("1098.3947558"))
    assert update.bids[:-1] == snapshot.bids[:-1]
    assert update.asks == snapshot.asks


def test_served_depth_is_the_configured_one(recorded: Any) -> None:
    (quote,) = BookParser(PAIRS, depth=3).parse(recorded.text(VENUE, "kraken-book-snapshot.json"), 1)

    assert [price for price, _ in quote.bids] == [D("0.5666"), D("0.5665"), D("0.5664")]
    assert len(quote.asks) == 3


# --- book: integrity -------------------------------------------------------------------------------


def small_book(books: BookParser) -> tuple[list[Level], list[Level]]:
    bids, asks = levels([("0.5", "1"), ("0.4", "2")]), levels([("0.6", "3")])
    books.parse(book_message("snapshot", "ALGO/USD", bids, asks, crc(bids, asks)), 1)
    return bids, asks


def test_update_with_a_wrong_checksum_discards_the_book_until_a_new_snapshot(books: BookParser) -> None:
    bids, asks = small_book(books)

    with pytest.raises(BookInvalid) as raised:
        books.parse(book_message("update", "ALGO/USD", levels([("0.5", "7")]), [], 12345), 2)
    skipped = books.parse(book_message("update", "ALGO/USD", [], [], crc(bids, asks)), 3)
    (resynced,) = books.parse(book_message("snapshot", "ALGO/USD", bids, asks, crc(bids, asks)), 4)

    assert (raised.value.symbol, raised.value.reason) == ("ALGO-USD", "checksum")
    assert skipped == []
    assert resynced.bids == tuple(bids)


def test_snapshot_whose_checksum_matches_no_precision_is_discarded(books: BookParser) -> None:
    bids, asks = levels([("0.5", "1")]), levels([("0.6", "3")])

    with pytest.raises(BookInvalid) as raised:
        books.parse(book_message("snapshot", "ALGO/USD", bids, asks, crc(bids, asks) ^ 1), 1)

    assert raised.value.reason == "checksum"


def test_update_before_a_snapshot_asks_for_one(books: BookParser) -> None:
    with pytest.raises(BookInvalid) as raised:
        books.parse(book_message("update", "ALGO/USD", levels([("0.5", "1")]), [], 0), 1)

    assert raised.value.reason == "snapshot"


def test_levels_pushed_past_the_subscribed_depth_are_cut_and_never_come_back() -> None:
    parser = BookParser(PAIRS, depth=10)
    bids = [(D(100 - n), D(1)) for n in range(10)]
    asks = [(D(200), D(1))]
    parser.parse(book_message("snapshot", "ALGO/USD", bids, asks, crc(bids, asks, 1, 0)), 1)

    # A new best bid: Kraken sends only the insert; the 10th bid (91) falls out.
    window = [(D(100.5), D(1)), *bids[:9]]
    (inserted,) = parser.parse(
        book_message("update", "ALGO/USD", [(D("100.5"), D(1))], [], crc(window, asks, 1, 0)), 2
    )
    # The new best bid goes again: bid 91 must not reappear; Kraken sends 90 as the new 10th.
    window = [*bids[:9], (D(90), D(1))]
    deleted = [(D("100.5"), D(0)), (D(90), D(1))]
    (after,) = parser.parse(book_message("update", "ALGO/USD", deleted, [], crc(window, asks, 1, 0)), 3)

    assert inserted.bids[0][0] == D("100.5")
    assert [price for price, _ in after.bids] == [price for price, _ in window]


def test_crossing_update_is_withdrawn_and_a_crossed_snapshot_is_held(books: BookParser) -> None:
    bids, asks = small_book(books)
    crossed_bids = levels([("0.7", "1"), ("0.5", "1")])

    with pytest.raises(BookInvalid) as raised:
        books.parse(
            book_message(
                "update", "ALGO/USD", levels([("0.7", "1")]), [], crc(crossed_bids + bids[1:], asks)
            ),
            2,
        )
    held = books.parse(book_message("snapshot", "ALGO/USD", crossed_bids, asks, crc(crossed_bids, asks)), 3)
    (uncrossed,) = books.parse(
        book_message("update", "ALGO/USD", levels([("0.7", "0")]), [], crc(crossed_bids[1:], asks)), 4
    )

    assert raised.value.reason == "crossed"
    assert held == []
    assert (uncrossed.bid, uncrossed.ask) == (D("0.5"), D("0.6"))


def test_a_bad_pair_in_a_message_does_not_lose_the_other_pairs_update(books: BookParser) -> None:
    small_book(books)
    matic_bids, matic_asks = levels([("0.56", "1")]), levels([("0.57", "1")])
    books.parse(book_message("snapshot", "MATIC/USD", matic_bids, matic_asks, crc(matic_bids, matic_asks)), 1)
    moved = levels([("0.565", "1")])
    message = json.loads(book_message("update", "ALGO/USD", levels([("0.5", "9")]), [], 1))
    message["data"].append(
        json.loads(book_message("update", "MATIC/USD", moved, [], crc(moved + matic_bids, matic_asks)))[
            "data"
        ][0]
    )

    with pytest.raises(BookInvalid) as raised:
        books.parse(json.dumps(message), 2)
    (matic,) = books.parse('{"channel":"heartbeat"}', 3)

    assert (raised.value.symbol, raised.value.reason) == ("ALGO-USD", "checksum")
    assert (matic.symbol, matic.bid) == ("MATIC-USD", D("0.565"))


@pytest.mark.parametrize(
    "frame",
    [
        '{"channel":"book","type":"update","data":[{"symbol":"ALGO/USD","bids":[{"price":"0.5","qty":1}],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"ALGO/USD","bids":[],"asks":[],"checksum":-1}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"ALGO/USD","bids":[[0.5,1]],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"partial","data":[]}',
        '{"channel":"book","type":"update","data":[{"symbol":"ALGO/USD","bids":[],"asks":[],"checksum":1,"timestamp":"x"}]}',
    ],
    ids=["string-price", "negative-checksum", "list-level", "unknown-type", "bad-timestamp"],
)
def test_garbage_book_message_is_a_parse_error_that_changes_no_book(books: BookParser, frame: str) -> None:
    bids, asks = small_book(books)

    with pytest.raises(ParseError) as raised:
        books.parse(frame, 2)
    (after,) = books.parse(book_message("update", "ALGO/USD", [], [], crc(bids, asks)), 3)

    assert not isinstance(raised.value, BookInvalid)
    assert (list(after.bids), list(after.asks)) == (bids, asks)


# --- property: never serve a book that differs from the venue's ----------------------------------------

STEP = D("0.05")


class Venue:
    """A Kraken pair with a deep book, sending snapshots and diffs of its top-10 window."""

    def __init__(self) -> None:
        self.book: dict[str, dict[Decimal, Decimal]] = {"bid": {}, "ask": {}}
        self.sent = 0
        self.windows: dict[int, tuple[tuple[Level, ...], tuple[Level, ...]]] = {}

    def window(self) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        bids = sorted(self.book["bid"].items(), reverse=True)[:10]
        asks = sorted(self.book["ask"].items())[:10]
        return tuple(bids), tuple(asks)

    def snapshot(self) -> str:
        bids, asks = self.window()
        return self._message("snapshot", list(bids), list(asks))

    def update(self, changes: list[tuple[str, int, int]]) -> str:
        old_bids, old_asks = self.window()
        for side, index, size in changes:
            price = D(100) - index * STEP if side == "bid" else D(100) + index * STEP
            if size:
                self.book[side][price] = D(size) / 1000
            else:
                self.book[side].pop(price, None)
        new_bids, new_asks = self.window()
        return self._message(
            "update", self._diff(old_bids, new_bids, "bid"), self._diff(old_asks, new_asks, "ask")
        )

    def _diff(self, old: tuple[Level, ...], new: tuple[Level, ...], side: str) -> list[Level]:
        # Kraken sends what changed inside the window and deletes, never levels merely pushed out.
        before = dict(old)
        changed = [(price, qty) for price, qty in new if before.get(price) != qty]
        deleted = [(price, D(0)) for price in before if price not in self.book[side]]
        return changed + deleted

    def _message(self, kind: str, bids: list[Level], asks: list[Level]) -> str:
        self.sent += 1
        self.windows[self.sent] = self.window()
        window_bids, window_asks = self.windows[self.sent]
        checksum = crc(list(window_bids), list(window_asks), 2, 8)
        # The message number rides in the timestamp's nanoseconds, to match quotes to windows.
        stamp = f"1970-01-01T00:00:00.{self.sent:09d}Z"
        return book_message(kind, "ALGO/USD", bids, asks, checksum, stamp)


CHANGES = st.lists(
    st.tuples(st.sampled_from(["bid", "ask"]), st.integers(1, 25), st.integers(0, 3000)), max_size=5
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(CHANGES, st.sampled_from(["ok", "ok", "ok", "drop", "duplicate", "swap"])), max_size=25
    )
)
def test_served_books_always_equal_the_venues_window(
    steps: list[tuple[list[tuple[str, int, int]], str]],
) -> None:
    venue = Venue()
    venue.book = {"bid": {D("99.95"): D("0.5")}, "ask": {D("100.05"): D("0.25")}}
    inbox = [venue.snapshot()]
    for changes, fault in steps:
        message = venue.update(changes)
        inbox.extend({"ok": [message], "drop": [], "duplicate": [message, message], "swap": [message]}[fault])
        if fault == "swap" and len(inbox) >= 2:
            inbox[-1], inbox[-2] = inbox[-2], inbox[-1]

    parser = BookParser({"ALGO/USD": "ALGO-USD"}, depth=5)
    served: list[Quote] = []
    invalid = 0
    while inbox:
        try:
            served.extend(parser.parse(inbox.pop(0), 0))
        except BookInvalid:
            invalid += 1
            inbox.insert(0, venue.snapshot())  # the resubscription's answer

    for quote in served:
        assert quote.exchange_ns is not None
        bids, asks = venue.windows[quote.exchange_ns]
        assert (quote.bids, quote.asks) == (bids[:5], asks[:5])
    if all(fault == "ok" for _, fault in steps):
        assert invalid == 0


# --- loopback: the runner resubscribes after a checksum failure ----------------------------------------


async def test_runner_resubscribes_a_pair_whose_checksum_fails_and_serves_the_new_snapshot(
    recorded: Any,
) -> None:
    snapshot = recorded.text(VENUE, "kraken-book-snapshot.json")
    update = recorded.text(VENUE, "kraken-book-update.json")
    corrupted = update.replace("1098.3947558", "1098.3947559")
    received: list[Any] = []
    quotes: list[Quote] = []
    invalid: list[tuple[str, str, str]] = []
    done = asyncio.Event()

    async def kraken(ws: ServerConnection) -> None:
        received.append(orjson.loads(await ws.recv()))
        await ws.send(snapshot)
        await ws.send(corrupted)
        received.extend([orjson.loads(await ws.recv()), orjson.loads(await ws.recv())])
        await ws.send(snapshot)
        await ws.send(update)
        await ws.wait_closed()

    def on_quote(quote: Quote) -> None:
        quotes.append(quote)
        if len(quotes) == 3:
            done.set()

    async with asyncio.timeout(10), serve(kraken, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        adapter = KrakenAdapter(["MATIC-USD"], ws_url=f"ws://127.0.0.1:{port}/v2", depth=10)
        runner = StreamRunner(adapter, on_quote, on_book_invalid=lambda *args: invalid.append(args))
        task = asyncio.create_task(runner.run(), name="kraken-runner-under-test")
        try:
            await done.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    book = {"channel": "book", "symbol": ["MATIC/USD"], "depth": 10}
    assert received == [
        {"method": "subscribe", "params": {**book, "snapshot": True}},
        {"method": "unsubscribe", "params": book},
        {"method": "subscribe", "params": {**book, "snapshot": True}},
    ]
    assert invalid == [("kraken", "MATIC-USD", "checksum")]
    assert [quote.bids[-1][1] for quote in quotes] == [
        D("606.70854372"),
        D("606.70854372"),
        D("1098.3947558"),
    ]
