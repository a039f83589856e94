"""OKX v5 adapter and parsers against the documented payloads, the seqId rules and the checksum."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve

from connectors.base import SnapshotParser
from connectors.book import BookInvalid
from connectors.errors import ParseError, ReconnectRequested, VenueConnectionError, VenueError
from connectors.okx import BboParser, BooksParser, OkxAdapter
from connectors.okx.checksum import book_checksum, check_string, signed_crc32
from connectors.stream import StreamRunner
from connectors.types import Quote

VENUE = "okx"
SYMBOLS = {"BTC-USDT": "BTC-USDT", "ETH-USDT": "ETH-USDT"}
D = Decimal


def books_frame(
    action: str,
    bids: list[list[str]],
    asks: list[list[str]],
    *,
    seq: int,
    prev: int,
    checksum: int = 0,
    inst: str = "BTC-USDT",
    ts: str = "1597026383085",
) -> bytes:
    """Build a `books` push of the documented shape (levels `[price, size]` get OKX's two extra fields)."""
    data = {
        "asks": [[*level, "0", "1"] for level in asks],
        "bids": [[*level, "0", "1"] for level in bids],
        "ts": ts,
        "checksum": checksum,
        "prevSeqId": prev,
        "seqId": seq,
    }
    return orjson.dumps({"arg": {"channel": "books", "instId": inst}, "action": action, "data": [data]})


def rest_body(bids: list[list[str]], asks: list[list[str]], *, seq: int, ts: str = "1629966436396") -> bytes:
    """Build a `GET /api/v5/market/books` body of the documented shape."""
    book = {
        "asks": [[*level, "0", "1"] for level in asks],
        "bids": [[*level, "0", "1"] for level in bids],
        "ts": ts,
        "seqId": seq,
    }
    return orjson.dumps({"code": "0", "msg": "", "data": [book]})


def bbo_frame(bid: str, ask: str, *, seq: int = 1, inst: str = "BTC-USDT") -> bytes:
    data = {
        "asks": [[ask, "1", "0", "1"]],
        "bids": [[bid, "2", "0", "1"]],
        "ts": "1670324386802",
        "seqId": seq,
    }
    return orjson.dumps({"arg": {"channel": "bbo-tbt", "instId": inst}, "data": [data]})


def tops(quote: Quote) -> tuple[tuple[tuple[Decimal, Decimal], ...], tuple[tuple[Decimal, Decimal], ...]]:
    return quote.bids, quote.asks


@pytest.fixture
def books() -> BooksParser:
    return BooksParser(SYMBOLS, depth=5)


def synced(books: BooksParser, seq: int = 100) -> BooksParser:
    books.parse(books_frame("snapshot", [["100", "1"]], [["101", "1"]], seq=seq, prev=-1), 1)
    return books


# --- adapter -------------------------------------------------------------------------------------


def test_default_endpoints_are_okx_production() -> None:
    adapter = OkxAdapter(["BTC-USDT"])

    assert adapter.connect_url() == "wss://ws.okx.com:8443/ws/v5/public"
    assert adapter.rest_url == "https://www.okx.com"


def test_top_of_book_feed_subscribes_bbo_tbt_in_the_documented_request_shape(recorded: Any) -> None:
    documented = orjson.loads(recorded.lines(VENUE, "okx-ws-control.jsonl")[0])

    (message,) = OkxAdapter(["BTC-USDT", "ETH-USDT"]).subscribe_messages()

    request = orjson.loads(message)
    assert request.keys() == documented.keys() - {"id"}
    assert request == {
        "op": "subscribe",
        "args": [{"channel": "bbo-tbt", "instId": "BTC-USDT"}, {"channel": "bbo-tbt", "instId": "ETH-USDT"}],
    }
    assert isinstance(OkxAdapter(["BTC-USDT"]).new_parser(), BboParser)


def test_depth_feed_subscribes_books_and_parses_with_a_snapshot_parser() -> None:
    adapter = OkxAdapter(["BTC-USDT"], depth=10)

    assert orjson.loads(adapter.subscribe_messages()[0])["args"] == [
        {"channel": "books", "instId": "BTC-USDT"}
    ]
    parser = adapter.new_parser()
    assert isinstance(parser, BooksParser)
    assert isinstance(parser, SnapshotParser)


def test_keepalive_is_the_plain_text_ping_within_okx_30_s_idle_limit() -> None:
    adapter = OkxAdapter(["BTC-USDT"])

    assert adapter.keepalive_message() == "ping"
    assert adapter.keepalive_interval_s is not None and adapter.keepalive_interval_s < 30


def test_resync_sends_nothing_on_the_socket_books_resync_from_rest() -> None:
    assert OkxAdapter(["BTC-USDT"], depth=5).resync_messages("BTC-USDT") == []
    assert OkxAdapter(["BTC-USDT"]).resync_messages("BTC-USDT") == []


@pytest.mark.parametrize("depth", [0, 401, True])
def test_depth_outside_the_400_level_book_is_refused(depth: int) -> None:
    with pytest.raises(ValueError, match="depth"):
        OkxAdapter(["BTC-USDT"], depth=depth)


def test_subscribe_request_over_64_kb_is_refused() -> None:
    symbols = [f"A{number}-USDT" for number in range(1600)]

    with pytest.raises(ValueError, match="65536 bytes"):
        OkxAdapter(symbols)


async def test_fetch_snapshot_needs_a_depth_feed() -> None:
    with pytest.raises(NotImplementedError, match="no depth"):
        await OkxAdapter(["BTC-USDT"]).fetch_snapshot("BTC-USDT")


# --- control frames ------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", ["pong", b"pong"])
def test_pong_text_frame_gives_nothing(frame: str | bytes) -> None:
    assert BboParser(SYMBOLS).parse(frame, 1) == []
    assert BooksParser(SYMBOLS, 5).parse(frame, 1) == []


def test_documented_acks_give_nothing_and_the_error_names_its_code(recorded: Any) -> None:
    lines = recorded.lines(VENUE, "okx-ws-control.jsonl")
    subscribe_ack, error, unsubscribe_ack = lines[1], lines[2], lines[4]
    parser = BboParser(SYMBOLS)

    assert parser.parse(subscribe_ack, 1) == []
    assert parser.parse(unsubscribe_ack, 1) == []
    with pytest.raises(ParseError, match="60012"):
        parser.parse(error, 1)


def test_documented_notice_64008_asks_for_a_reconnect(recorded: Any) -> None:
    notice = recorded.lines(VENUE, "okx-ws-control.jsonl")[5]

    with pytest.raises(ReconnectRequested, match="64008"):
        BooksParser(SYMBOLS, 5).parse(notice, 1)


def test_an_echoed_request_is_not_mistaken_for_an_ack(recorded: Any) -> None:
    with pytest.raises(ParseError, match="unexpected frame"):
        BboParser(SYMBOLS).parse(recorded.lines(VENUE, "okx-ws-control.jsonl")[0], 1)


# --- bbo-tbt -------------------------------------------------------------------------------------


def test_recorded_bbo_tbt_push_gives_the_documented_top_of_book(recorded: Any, received_ns: int) -> None:
    ack, push = recorded.lines(VENUE, "bbo.jsonl")
    parser = BboParser(SYMBOLS)

    assert parser.parse(ack, received_ns) == []
    assert parser.parse(push, received_ns) == [
        Quote(
            venue="okx",
            symbol="BTC-USDT",
            bid=D("111.05"),
            bid_qty=D("57745"),
            ask=D("111.06"),
            ask_qty=D("55154"),
            exchange_ns=1670324386802 * 1_000_000,
            received_ns=received_ns,
            seq=363996337,
        )
    ]


def test_documented_bbo_tbt_and_books5_examples_are_for_a_swap_instrument_and_rejected(recorded: Any) -> None:
    # OKX's own examples use BCH-USDT-SWAP: a spot connector never configures it.
    with pytest.raises(ParseError, match="unconfigured instrument 'BCH-USDT-SWAP'"):
        BboParser(SYMBOLS).parse(recorded.text(VENUE, "okx-bbo-tbt.json"), 1)
    with pytest.raises(ParseError, match="unconfigured instrument 'BCH-USDT-SWAP'"):
        BooksParser(SYMBOLS, 5).parse(recorded.text(VENUE, "okx-books5.json"), 1)


def test_unsubscribed_tickers_channel_is_a_parse_error(recorded: Any) -> None:
    with pytest.raises(ParseError, match="unexpected channel 'tickers'"):
        BboParser(SYMBOLS).parse(recorded.text(VENUE, "okx-tickers.json"), 1)


def test_crossed_pre_open_top_gives_no_quote_and_is_withdrawn_once() -> None:
    parser = BboParser(SYMBOLS)
    assert parser.parse(bbo_frame("100", "101", seq=1), 1)

    with pytest.raises(BookInvalid) as raised:
        parser.parse(bbo_frame("101", "100.5", seq=2), 2)
    still_crossed = parser.parse(bbo_frame("101", "101", seq=3), 3)
    uncrossed = parser.parse(bbo_frame("100", "100.5", seq=4), 4)

    assert (raised.value.symbol, raised.value.reason) == ("BTC-USDT", "crossed")
    assert still_crossed == []
    assert [(q.bid, q.ask, q.seq) for q in uncrossed] == [(D("100"), D("100.5"), 4)]


# --- books: documented samples and sequence rules ---------------------------------------------------


def test_documented_snapshot_gives_the_top_levels_best_first(
    books: BooksParser, recorded: Any, received_ns: int
) -> None:
    (quote,) = books.parse(recorded.text(VENUE, "okx-books-snapshot.json"), received_ns)

    assert quote == Quote(
        venue="okx",
        symbol="BTC-USDT",
        bid=D("8476.97"),
        bid_qty=D("256"),
        ask=D("8476.98"),
        ask_qty=D("415"),
        exchange_ns=1597026383085 * 1_000_000,
        received_ns=received_ns,
        seq=123456,
        bids=(
            (D("8476.97"), D("256")),
            (D("8475.55"), D("101")),
            (D("8475.54"), D("100")),
            (D("8475.3"), D("1")),
            (D("8447.32"), D("6")),
        ),
        asks=(
            (D("8476.98"), D("415")),
            (D("8477"), D("7")),
            (D("8477.34"), D("85")),
            (D("8477.56"), D("1")),
            (D("8505.84"), D("8")),
        ),
    )


def test_documented_update_repeats_the_snapshot_levels_so_the_book_is_unchanged(
    books: BooksParser, recorded: Any
) -> None:
    (snapshot,) = books.parse(recorded.text(VENUE, "okx-books-snapshot.json"), 1)
    (update,) = books.parse(recorded.text(VENUE, "okx-books-update.json"), 2)

    assert tops(update) == tops(snapshot)
    assert update.seq == 123457


def test_update_sets_levels_and_size_zero_deletes(books: BooksParser) -> None:
    synced(books, seq=10)

    (quote,) = books.parse(
        books_frame("update", [["100", "0"], ["99.5", "3"]], [["101", "4"]], seq=11, prev=10), 2
    )

    assert tops(quote) == (((D("99.5"), D("3")),), ((D("101"), D("4")),))


def test_seq_id_below_prev_seq_id_after_maintenance_is_not_a_gap(books: BooksParser) -> None:
    synced(books, seq=5000)

    (reset,) = books.parse(books_frame("update", [["99", "1"]], [], seq=7, prev=5000), 2)
    (after,) = books.parse(books_frame("update", [["98", "1"]], [], seq=8, prev=7), 3)

    assert (reset.seq, after.seq) == (7, 8)
    assert [price for price, _ in after.bids] == [D("100"), D("99"), D("98")]


def test_empty_keepalive_update_leaves_the_book_unchanged(books: BooksParser) -> None:
    (before,) = synced_quote(books, seq=42)

    (keepalive,) = books.parse(books_frame("update", [], [], seq=42, prev=42, ts="1597026443085"), 2)

    assert tops(keepalive) == tops(before)
    assert keepalive.seq == 42
    assert keepalive.exchange_ns == 1597026443085 * 1_000_000


def synced_quote(books: BooksParser, seq: int) -> list[Quote]:
    return books.parse(books_frame("snapshot", [["100", "1"]], [["101", "1"]], seq=seq, prev=-1), 1)


def test_gap_discards_the_book_and_serves_nothing_until_a_rest_snapshot_aligns(books: BooksParser) -> None:
    synced(books, seq=10)

    with pytest.raises(BookInvalid) as raised:
        books.parse(books_frame("update", [["99", "1"]], [], seq=13, prev=12), 2)
    buffered = books.parse(books_frame("update", [["98", "1"]], [], seq=14, prev=13), 3)
    requested = books.snapshot_requests()
    (quote,) = books.load_snapshot("BTC-USDT", rest_body([["100", "2"]], [["101", "2"]], seq=12), 4)

    assert (raised.value.symbol, raised.value.reason) == ("BTC-USDT", "gap")
    assert buffered == []
    assert requested == ["BTC-USDT"]
    assert books.snapshot_requests() == []
    assert quote.seq == 14
    assert [price for price, _ in quote.bids] == [D("100"), D("99"), D("98")]
    assert quote.bids[0] == (D("100"), D("2"))


def test_duplicate_push_is_skipped_not_applied_twice(books: BooksParser) -> None:
    synced(books, seq=10)
    push = books_frame("update", [["99", "1"]], [], seq=11, prev=10)
    books.parse(push, 2)
    books.parse(books_frame("update", [["99", "0"]], [], seq=12, prev=11), 3)

    duplicate = books.parse(push, 4)
    (after,) = books.parse(books_frame("update", [], [], seq=13, prev=12), 5)

    assert duplicate == []
    assert after.bids == ((D("100"), D("1")),)


def test_update_for_another_symbol_is_unaffected_by_a_gap(books: BooksParser) -> None:
    synced(books, seq=10)
    books.parse(books_frame("snapshot", [["10", "1"]], [["11", "1"]], seq=500, prev=-1, inst="ETH-USDT"), 1)

    with pytest.raises(BookInvalid):
        books.parse(books_frame("update", [], [], seq=20, prev=19), 2)
    (eth,) = books.parse(books_frame("update", [["10.5", "1"]], [], seq=501, prev=500, inst="ETH-USDT"), 3)

    assert (eth.symbol, eth.bid) == ("ETH-USDT", D("10.5"))


def test_stream_without_a_snapshot_starts_from_the_documented_rest_body(
    books: BooksParser, recorded: Any
) -> None:
    first = books.parse(books_frame("update", [["41006.4", "1"]], [], seq=3235851743, prev=3235851742), 1)
    requested = books.snapshot_requests()
    payload = recorded.text(VENUE, "okx-rest-books.json").encode()

    (quote,) = books.load_snapshot("BTC-USDT", payload, 2)

    assert (first, requested) == ([], ["BTC-USDT"])
    assert quote.bids == ((D("41006.4"), D("1")), (D("41006.3"), D("0.30178218")))
    assert quote.asks == ((D("41006.8"), D("0.60038921")),)
    assert quote.seq == 3235851743
    assert quote.exchange_ns == 1597026383085 * 1_000_000


def test_buffered_updates_already_in_the_rest_snapshot_are_skipped(books: BooksParser) -> None:
    for seq in (11, 12, 13):
        books.parse(books_frame("update", [[f"{seq}", "1"]], [], seq=seq, prev=seq - 1), seq)

    (quote,) = books.load_snapshot("BTC-USDT", rest_body([["1", "1"]], [["100", "1"]], seq=12), 20)

    assert [price for price, _ in quote.bids] == [D("13"), D("1")]
    assert quote.seq == 13


def test_rest_snapshot_older_than_the_buffer_is_refused_and_asked_again(books: BooksParser) -> None:
    books.parse(books_frame("update", [["99", "1"]], [], seq=21, prev=20), 1)
    books.snapshot_requests()

    with pytest.raises(BookInvalid) as raised:
        books.load_snapshot("BTC-USDT", rest_body([["100", "1"]], [["101", "1"]], seq=15), 2)
    (quote,) = books.load_snapshot("BTC-USDT", rest_body([["100", "1"]], [["101", "1"]], seq=20), 3)

    assert raised.value.reason == "snapshot"
    assert books.snapshot_requests() == ["BTC-USDT"]
    assert quote.seq == 21


def test_gap_inside_the_buffer_is_reported_after_the_snapshot(books: BooksParser) -> None:
    books.parse(books_frame("update", [["99", "1"]], [], seq=21, prev=20), 1)
    books.parse(books_frame("update", [["98", "1"]], [], seq=25, prev=24), 2)

    with pytest.raises(BookInvalid) as raised:
        books.load_snapshot("BTC-USDT", rest_body([["100", "1"]], [["101", "1"]], seq=20), 3)

    assert raised.value.reason == "gap"
    assert books.parse(books_frame("update", [], [], seq=26, prev=25), 4) == []


def test_first_update_after_a_rest_snapshot_may_straddle_it(books: BooksParser) -> None:
    books.parse(books_frame("update", [], [], seq=5, prev=4), 1)
    books.load_snapshot("BTC-USDT", rest_body([["100", "1"]], [["101", "1"]], seq=50), 2)

    old = books.parse(books_frame("update", [["1", "1"]], [], seq=50, prev=49), 3)
    (straddling,) = books.parse(books_frame("update", [["99", "1"]], [], seq=52, prev=48), 4)
    with pytest.raises(BookInvalid) as raised:
        books.parse(books_frame("update", [], [], seq=60, prev=58), 5)

    assert old == []
    assert straddling.seq == 52
    assert raised.value.reason == "gap"


def test_rest_snapshot_after_a_stream_snapshot_resynced_the_book_is_ignored(books: BooksParser) -> None:
    books.parse(books_frame("update", [], [], seq=5, prev=4), 1)
    synced(books, seq=9)

    assert books.load_snapshot("BTC-USDT", rest_body([["1", "1"]], [["2", "1"]], seq=3), 2) == []


def test_garbage_rest_body_is_a_parse_error_and_asks_again(books: BooksParser) -> None:
    books.parse(books_frame("update", [], [], seq=5, prev=4), 1)
    books.snapshot_requests()

    with pytest.raises(ParseError, match="code '50011'"):
        books.load_snapshot("BTC-USDT", b'{"code": "50011", "msg": "Too Many Requests", "data": []}', 2)

    assert books.snapshot_requests() == ["BTC-USDT"]


# --- checksum ------------------------------------------------------------------------------------


def test_documented_check_strings_and_their_signed_crc32_reproduce(recorded: Any) -> None:
    vectors = recorded.json(VENUE, "test-vectors.json")["okx_checksum_strings"]
    for case in ("case_more_than_25_levels", "case_fewer_than_25_levels"):
        vector = vectors[case]
        text = check_string(
            [(level[0], level[1]) for level in vector["bids"]],
            [(level[0], level[1]) for level in vector["asks"]],
        )
        assert text == vector["check_string"]
        assert signed_crc32(text) == vector["crc32_signed_computed"]


def test_book_checksum_of_decimal_levels_keeps_the_received_digits() -> None:
    bids = [(D("3366.1"), D("7")), (D("3366"), D("6"))]
    asks = [(D("3366.8"), D("9")), (D("3368"), D("8"))]

    assert book_checksum(bids, asks) == -1881014294
    assert book_checksum([(D("0.00000001"), D("1.50"))], []) == signed_crc32("0.00000001:1.50")


def test_non_zero_checksum_that_matches_is_accepted(books: BooksParser) -> None:
    frame = books_frame(
        "snapshot",
        [["3366.1", "7"]],
        [["3366.8", "9"], ["3368", "8"], ["3372", "8"]],
        seq=1,
        prev=-1,
        checksum=831078360,
    )

    (quote,) = books.parse(frame, 1)

    assert quote.bid == D("3366.1")


def test_non_zero_checksum_that_disagrees_discards_the_book(books: BooksParser) -> None:
    books.parse(books_frame("snapshot", [["3366.1", "7"]], [["3366.8", "9"]], seq=1, prev=-1), 1)
    good = signed_crc32("3366.1:7:3366.8:9:3368:8")

    (quote,) = books.parse(books_frame("update", [], [["3368", "8"]], seq=2, prev=1, checksum=good), 2)
    with pytest.raises(BookInvalid) as raised:
        books.parse(books_frame("update", [["3366", "6"]], [], seq=3, prev=2, checksum=good), 3)

    assert quote.seq == 2
    assert raised.value.reason == "checksum"
    assert books.snapshot_requests() == ["BTC-USDT"]
    assert books.parse(books_frame("update", [], [], seq=4, prev=3), 4) == []


def test_zero_checksum_is_not_verified(books: BooksParser, recorded: Any) -> None:
    snapshot = copy.deepcopy(recorded.json(VENUE, "okx-books-snapshot.json"))
    assert snapshot["data"][0]["checksum"] == 0

    assert books.parse(orjson.dumps(snapshot), 1)


# --- crossed -------------------------------------------------------------------------------------


def test_update_that_crosses_the_book_is_discarded_then_a_crossed_snapshot_is_held(
    books: BooksParser,
) -> None:
    synced(books, seq=10)

    with pytest.raises(BookInvalid) as raised:
        books.parse(books_frame("update", [["101.5", "1"]], [], seq=11, prev=10), 2)
    books.parse(books_frame("update", [], [], seq=12, prev=11), 3)
    held = books.load_snapshot(
        "BTC-USDT", rest_body([["101.5", "1"], ["100", "1"]], [["101", "1"]], seq=12), 4
    )
    still = books.parse(books_frame("update", [["101.2", "1"]], [], seq=13, prev=12), 5)
    (uncrossed,) = books.parse(
        books_frame("update", [["101.5", "0"], ["101.2", "0"]], [], seq=14, prev=13), 6
    )

    assert raised.value.reason == "crossed"
    assert (held, still) == ([], [])
    assert (uncrossed.bid, uncrossed.ask) == (D("100"), D("101"))


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        b"not json",
        b"[1, 2]",
        b'{"arg": "books", "data": []}',
        b'{"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update", "data": []}',
        books_frame("update", [["abc", "1"]], [], seq=1, prev=0),
        books_frame("update", [["-1", "1"]], [], seq=1, prev=0),
        books_frame("snapshot", [["100", "1"]], [], seq=1, prev=-1).replace(b'"seqId":1', b'"seqId":"1"'),
        books_frame("snapshot", [["100", "1"]], [], seq=1, prev=-1).replace(b'"snapshot"', b'"partial"'),
        books_frame("snapshot", [["100", "1"]], [], seq=1, prev=-1, ts="yesterday"),
        books_frame("snapshot", [["100", "1"]], [], seq=1, prev=-1, inst="DOGE-USDT"),
    ],
)
def test_garbage_is_a_parse_error_that_changes_no_book(books: BooksParser, frame: bytes) -> None:
    (before,) = synced_quote(books, seq=0)

    with pytest.raises(ParseError) as raised:
        books.parse(frame, 2)
    (after,) = books.parse(books_frame("update", [], [], seq=0, prev=0), 3)

    assert not isinstance(raised.value, BookInvalid)
    assert tops(after) == tops(before)


# --- property: never serve a book that differs from the venue's ----------------------------------------

PRICES = st.integers(min_value=1, max_value=20)


@st.composite
def diff_streams(draw: st.DrawFn) -> tuple[list[list[tuple[str, int, int]]], list[str]]:
    """Return venue updates (side, price index, size) and what the network does to each push."""
    updates = draw(
        st.lists(
            st.lists(st.tuples(st.sampled_from(["bid", "ask"]), PRICES, st.integers(0, 3)), max_size=4),
            min_size=1,
            max_size=25,
        )
    )
    faults = draw(
        st.lists(
            st.sampled_from(["ok", "ok", "ok", "drop", "duplicate", "swap"]),
            min_size=len(updates),
            max_size=len(updates),
        )
    )
    return updates, faults


def _price(side: str, index: int) -> str:
    # Bids below 100, asks above: the venue's book never crosses.
    return str(100 - index) if side == "bid" else str(100 + index)


@settings(max_examples=300, deadline=None)
@given(diff_streams())
def test_served_books_always_equal_the_venues_book_at_their_seq_id(
    stream: tuple[list[list[tuple[str, int, int]]], list[str]],
) -> None:
    updates, faults = stream
    venue: dict[str, dict[str, str]] = {"bid": {"99": "1"}, "ask": {"101": "1"}}
    books_at = {1000: copy.deepcopy(venue)}
    pushes: list[bytes] = []
    seq = 1000
    for changes in updates:
        bids, asks = [], []
        for side, index, size in changes:
            price = _price(side, index)
            (bids if side == "bid" else asks).append([price, str(size)])
            if size:
                venue[side][price] = str(size)
            else:
                venue[side].pop(price, None)
        pushes.append(books_frame("update", bids, asks, seq=seq + 1, prev=seq))
        seq += 1
        books_at[seq] = copy.deepcopy(venue)
    delivered = _network(pushes, faults)

    parser = BooksParser({"BTC-USDT": "BTC-USDT"}, depth=5)
    served = parser.parse(books_frame("snapshot", [["99", "1"]], [["101", "1"]], seq=1000, prev=-1), 0)
    invalid = 0
    for position, frame in enumerate(delivered):
        try:
            served.extend(parser.parse(frame, position))
        except BookInvalid:
            invalid += 1
        for symbol in parser.snapshot_requests():
            # The venue answers with its whole book as of the newest push it has sent.
            newest = max(orjson.loads(sent)["data"][0]["seqId"] for sent in delivered[: position + 1])
            try:
                served.extend(parser.load_snapshot(symbol, _rest(books_at[newest], newest), position))
            except BookInvalid:
                invalid += 1

    for quote in served:
        assert (quote.bids, quote.asks) == _top(books_at[quote.seq])
    if all(fault == "ok" for fault in faults):
        assert invalid == 0


def _top(book: dict[str, dict[str, str]]) -> tuple[Any, ...]:
    bids = sorted(((D(p), D(q)) for p, q in book["bid"].items()), reverse=True)[:5]
    asks = sorted((D(p), D(q)) for p, q in book["ask"].items())[:5]
    return tuple(bids), tuple(asks)


def _rest(book: dict[str, dict[str, str]], seq: int) -> bytes:
    return rest_body(
        [[p, q] for p, q in book["bid"].items()], [[p, q] for p, q in book["ask"].items()], seq=seq
    )


def _network(pushes: list[bytes], faults: list[str]) -> list[bytes]:
    delivered: list[bytes] = []
    held: bytes | None = None
    for push, fault in zip(pushes, faults, strict=True):
        if fault == "drop":
            continue
        if fault == "swap" and held is None:
            held = push
            continue
        delivered.append(push)
        if fault == "duplicate":
            delivered.append(push)
        if held is not None:
            delivered.append(held)
            held = None
    if held is not None:
        delivered.append(held)
    return delivered


# --- loopback: the REST snapshot and the runner's resync ------------------------------------------------


@contextlib.asynccontextmanager
async def rest_server(handler: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """Serve `GET /api/v5/market/books` on a free 127.0.0.1 port and yield the http:// base URL."""
    app = web.Application()
    app.router.add_get("/api/v5/market/books", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_fetch_snapshot_asks_for_400_levels_of_the_instrument(recorded: Any) -> None:
    seen: list[dict[str, str]] = []
    body = recorded.text(VENUE, "okx-rest-books.json")

    async def books_endpoint(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return web.Response(text=body, content_type="application/json")

    async with asyncio.timeout(10), rest_server(books_endpoint) as url:
        adapter = OkxAdapter(["BTC-USDT"], rest_url=url, depth=5)
        try:
            payload = await adapter.fetch_snapshot("BTC-USDT")
        finally:
            await adapter.close()
            await adapter.close()  # idempotent

    assert seen == [{"instId": "BTC-USDT", "sz": "400"}]
    assert payload == body.encode()


async def test_rate_limited_snapshot_is_a_venue_error_naming_the_status() -> None:
    async def limited(request: web.Request) -> web.Response:
        return web.Response(status=429, text='{"code":"50011","msg":"Too Many Requests"}')

    async with asyncio.timeout(10), rest_server(limited) as url:
        adapter = OkxAdapter(["BTC-USDT"], rest_url=url, depth=5)
        with pytest.raises(VenueError, match="HTTP 429"):
            await adapter.fetch_snapshot("BTC-USDT")
        await adapter.close()


async def test_unreachable_rest_endpoint_is_a_connection_error() -> None:
    async def never_called(request: web.Request) -> web.Response:
        raise AssertionError("the server is gone before the request")

    async with rest_server(never_called) as url:
        pass  # the port is free again once the server is gone
    adapter = OkxAdapter(["BTC-USDT"], rest_url=url, depth=5)
    try:
        with pytest.raises(VenueConnectionError, match="failed"):
            await asyncio.wait_for(adapter.fetch_snapshot("BTC-USDT"), 10)
    finally:
        await adapter.close()


async def test_runner_syncs_from_rest_without_a_stream_snapshot_and_resyncs_a_gap() -> None:
    snapshots = [
        rest_body([["100", "1"]], [["101", "1"]], seq=100),
        rest_body([["90", "5"]], [["91", "5"]], seq=106),
    ]
    served = {seq: asyncio.Event() for seq in (101, 102, 106, 107)}
    invalid: list[tuple[str, str, str]] = []
    quotes: list[Quote] = []

    async def books_endpoint(request: web.Request) -> web.Response:
        return web.Response(body=snapshots.pop(0), content_type="application/json")

    async def okx(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(books_frame("update", [["99", "1"]], [], seq=101, prev=100))
        await served[101].wait()  # synced from the first REST snapshot
        await ws.send(books_frame("update", [["98", "1"]], [], seq=102, prev=101))
        await ws.send(books_frame("update", [["97", "1"]], [], seq=106, prev=105))  # 103..105 lost
        await served[106].wait()  # resynced from the second
        await ws.send(books_frame("update", [["89", "1"]], [], seq=107, prev=106))
        await ws.wait_closed()

    def on_quote(quote: Quote) -> None:
        quotes.append(quote)
        if quote.seq in served:
            served[quote.seq].set()

    async with (
        asyncio.timeout(10),
        rest_server(books_endpoint) as rest_url,
        serve(okx, "127.0.0.1", 0) as server,
    ):
        port = server.sockets[0].getsockname()[1]
        adapter = OkxAdapter(
            ["BTC-USDT"], ws_url=f"ws://127.0.0.1:{port}/ws/v5/public", rest_url=rest_url, depth=5
        )
        runner = StreamRunner(adapter, on_quote, on_book_invalid=lambda *args: invalid.append(args))
        task = asyncio.create_task(runner.run(), name="okx-runner-under-test")
        try:
            await served[107].wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    assert invalid == [("okx", "BTC-USDT", "gap")]
    assert [quote.seq for quote in quotes] == [101, 102, 106, 107]
    assert [price for price, _ in quotes[1].bids] == [D("100"), D("99"), D("98")]
    # The resynced book is the new snapshot plus what followed it, nothing of the old one.
    assert quotes[2].bids == ((D("90"), D("5")),)
    assert quotes[3].bids == ((D("90"), D("5")), (D("89"), D("1")))
