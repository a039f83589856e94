"""Binance depth books: the documented diff event and REST snapshot, and the documented sync procedure."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiohttp import web

from connectors.binance import BinanceAdapter
from connectors.binance.depth import DepthParser, DepthSnapshots, snapshot_limit, snapshot_weight
from connectors.book import BookInvalid
from connectors.errors import ParseError, ReconnectRequested, VenueConnectionError, VenueError

VENUE = "binance"
D = Decimal
SYMBOLS = {"BNBBTC": "BNB-BTC", "BTCUSDT": "BTC-USDT"}


def combined(payload: dict[str, Any]) -> bytes:
    """Wrap a diff event as the combined stream delivers it."""
    return orjson.dumps({"stream": f"{payload['s'].lower()}@depth@100ms", "data": payload})


def event(
    first: int, last: int, bids: list[list[str]], asks: list[list[str]], symbol: str = "BNBBTC"
) -> bytes:
    """Build a diff event of the documented shape (`E` derived from `u`)."""
    data = {
        "e": "depthUpdate",
        "E": 1672515782000 + last,
        "s": symbol,
        "U": first,
        "u": last,
        "b": bids,
        "a": asks,
    }
    return combined(data)


def snapshot(last_id: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    return orjson.dumps({"lastUpdateId": last_id, "bids": bids, "asks": asks})


@pytest.fixture
def parser() -> DepthParser:
    return DepthParser(SYMBOLS, depth=5)


@pytest.fixture
def documented_event(recorded: Any) -> bytes:
    return combined(recorded.json(VENUE, "binance-depthUpdate.json"))


@pytest.fixture
def documented_snapshot(recorded: Any) -> bytes:
    text: str = recorded.text(VENUE, "binance-depth-rest-snapshot.json")
    return text.encode()


def synced(parser: DepthParser, last_id: int = 100) -> None:
    """Bring BNB-BTC in sync at `last_id` with a 2-level book, through the documented procedure."""
    assert parser.parse(event(last_id, last_id, [], []), 1) == []
    assert parser.snapshot_requests() == ["BNB-BTC"]
    book = snapshot(last_id, [["10", "1"], ["9", "2"]], [["11", "3"], ["12", "4"]])
    assert parser.load_snapshot("BNB-BTC", book, 2)


# --- the documented payloads -------------------------------------------------------------------


def test_documented_event_is_buffered_and_asks_for_a_snapshot_once(
    parser: DepthParser, documented_event: bytes
) -> None:
    assert parser.parse(documented_event, 1) == []
    assert parser.parse(documented_event, 2) == []

    assert parser.snapshot_requests() == ["BNB-BTC"]
    assert parser.snapshot_requests() == []


def test_documented_snapshot_newer_than_the_documented_event_is_the_book(
    parser: DepthParser, documented_event: bytes, documented_snapshot: bytes, received_ns: int
) -> None:
    parser.parse(documented_event, 1)

    (quote,) = parser.load_snapshot("BNB-BTC", documented_snapshot, received_ns)

    # The event (u=160) is older than the snapshot (lastUpdateId=1027024) and is dropped.
    assert (quote.venue, quote.symbol, quote.seq, quote.received_ns) == (
        "binance",
        "BNB-BTC",
        1027024,
        received_ns,
    )
    assert (quote.bid, quote.bid_qty, quote.ask, quote.ask_qty) == (
        D("4.00000000"),
        D("431.00000000"),
        D("4.00000200"),
        D("12.00000000"),
    )
    assert quote.bids == ((D("4.00000000"), D("431.00000000")),)
    assert quote.asks == ((D("4.00000200"), D("12.00000000")),)
    assert quote.exchange_ns is None  # a REST snapshot carries no event time


def test_first_kept_event_straddling_the_snapshot_is_applied(
    parser: DepthParser, documented_event: bytes, received_ns: int
) -> None:
    parser.parse(documented_event, 1)  # U=157, u=160
    book = snapshot(158, [["0.0023", "5"]], [["0.0027", "6"]])

    (quote,) = parser.load_snapshot("BNB-BTC", book, received_ns)

    assert quote.seq == 160
    assert quote.exchange_ns == 1672515782136 * 1_000_000
    assert quote.bids == ((D("0.0024"), D("10")), (D("0.0023"), D("5")))
    assert quote.asks == ((D("0.0026"), D("100")), (D("0.0027"), D("6")))


def test_snapshot_older_than_the_first_buffered_event_is_fetched_again(
    parser: DepthParser, documented_event: bytes
) -> None:
    parser.parse(documented_event, 1)  # U=157
    parser.snapshot_requests()

    assert parser.load_snapshot("BNB-BTC", snapshot(156, [["1", "1"]], [["2", "1"]]), 2) == []
    assert parser.snapshot_requests() == ["BNB-BTC"]
    # Nothing is served from it: the next event still only buffers.
    assert parser.parse(event(161, 161, [["1", "1"]], []), 3) == []


# --- the per-event rule ------------------------------------------------------------------------


def test_next_event_applies_and_zero_quantity_deletes(parser: DepthParser) -> None:
    synced(parser)

    (quote,) = parser.parse(event(101, 103, [["10", "0"], ["9.5", "7"]], [["11", "2"]]), 5)

    assert quote.seq == 103
    assert quote.bids == ((D("9.5"), D("7")), (D("9"), D("2")))
    assert quote.asks == ((D("11"), D("2")), (D("12"), D("4")))
    assert quote.exchange_ns == (1672515782000 + 103) * 1_000_000


def test_old_and_duplicate_events_are_ignored(parser: DepthParser) -> None:
    synced(parser)
    parser.parse(event(101, 103, [["10", "5"]], []), 3)

    assert parser.parse(event(101, 103, [["10", "5"]], []), 4) == []
    assert parser.parse(event(90, 100, [["10", "0"]], []), 5) == []
    (quote,) = parser.parse(event(104, 104, [], [["12", "1"]]), 6)
    assert quote.bids[0] == (D("10"), D("5"))


def test_gap_discards_the_book_and_restarts_the_procedure(parser: DepthParser) -> None:
    synced(parser)

    with pytest.raises(BookInvalid) as caught:
        parser.parse(event(102, 102, [["10", "9"]], []), 3)

    assert (caught.value.symbol, caught.value.reason) == ("BNB-BTC", "gap")
    assert parser.snapshot_requests() == ["BNB-BTC"]
    # The discarded book is never served again: events only buffer until the new snapshot.
    assert parser.parse(event(103, 103, [["10", "8"]], []), 4) == []
    new_book = snapshot(102, [["20", "1"]], [["21", "1"]])
    (quote,) = parser.load_snapshot("BNB-BTC", new_book, 5)
    assert (quote.seq, quote.bids, quote.asks) == (
        103,
        ((D("20"), D("1")), (D("10"), D("8"))),
        ((D("21"), D("1")),),
    )


def test_gap_inside_the_buffered_events_is_reported_after_the_snapshot(parser: DepthParser) -> None:
    parser.parse(event(100, 101, [["10", "1"]], []), 1)
    parser.parse(event(105, 106, [["10", "2"]], []), 2)  # 102..104 never arrived
    parser.snapshot_requests()

    with pytest.raises(BookInvalid, match="gap"):
        parser.load_snapshot("BNB-BTC", snapshot(100, [["9", "1"]], [["11", "1"]]), 3)

    # It starts over from the first event after the gap.
    assert parser.snapshot_requests() == ["BNB-BTC"]
    (quote,) = parser.load_snapshot("BNB-BTC", snapshot(105, [["9", "1"]], [["11", "1"]]), 4)
    assert (quote.seq, quote.bids[0]) == (106, (D("10"), D("2")))


def test_update_that_crosses_the_book_discards_it(parser: DepthParser) -> None:
    synced(parser)

    with pytest.raises(BookInvalid) as caught:
        parser.parse(event(101, 101, [["11.5", "1"]], []), 3)

    assert caught.value.reason == "crossed"
    assert parser.parse(event(102, 102, [["11.5", "0"]], []), 4) == []
    assert parser.snapshot_requests() == ["BNB-BTC"]


def test_a_gap_on_one_symbol_leaves_the_others_served(parser: DepthParser) -> None:
    synced(parser)
    parser.parse(event(50, 50, [], [], symbol="BTCUSDT"), 3)
    parser.snapshot_requests()
    parser.load_snapshot("BTC-USDT", snapshot(50, [["100", "1"]], [["101", "1"]]), 4)

    with pytest.raises(BookInvalid):
        parser.parse(event(200, 200, [], []), 5)
    (quote,) = parser.parse(event(51, 51, [["100", "2"]], [], symbol="BTCUSDT"), 6)

    assert (quote.symbol, quote.seq, quote.bid_qty) == ("BTC-USDT", 51, D("2"))


def test_quote_carries_at_most_depth_levels() -> None:
    parser = DepthParser(SYMBOLS, depth=2)
    parser.parse(event(10, 10, [], []), 1)
    levels = [[str(price), "1"] for price in range(1, 9)]

    (quote,) = parser.load_snapshot(
        "BNB-BTC", snapshot(10, levels, [[str(price), "1"] for price in range(20, 28)]), 2
    )

    assert [price for price, _ in quote.bids] == [D(8), D(7)]
    assert [price for price, _ in quote.asks] == [D(20), D(21)]


def test_one_sided_book_serves_nothing(parser: DepthParser) -> None:
    parser.parse(event(10, 10, [], []), 1)

    assert parser.load_snapshot("BNB-BTC", snapshot(10, [["1", "1"]], []), 2) == []


def test_snapshot_body_that_is_not_a_snapshot_is_a_parse_error_and_asks_again(parser: DepthParser) -> None:
    parser.parse(event(10, 10, [], []), 1)
    parser.snapshot_requests()

    with pytest.raises(ParseError, match="lastUpdateId"):
        parser.load_snapshot("BNB-BTC", b'{"code": -1121, "msg": "Invalid symbol."}', 2)

    assert parser.snapshot_requests() == ["BNB-BTC"]


def test_snapshot_for_an_unconfigured_symbol_is_a_parse_error(parser: DepthParser) -> None:
    with pytest.raises(ParseError, match="unconfigured"):
        parser.load_snapshot("ETH-USDT", snapshot(1, [], []), 1)


def test_late_snapshot_for_a_symbol_in_sync_changes_nothing(parser: DepthParser) -> None:
    synced(parser)

    assert parser.load_snapshot("BNB-BTC", snapshot(5, [["1", "1"]], [["2", "1"]]), 3) == []
    (quote,) = parser.parse(event(101, 101, [], [["12", "0"]]), 4)
    assert quote.bids[0] == (D("10"), D("1"))


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (event(12, 11, [], []), "U=12 > u=11"),
        (event(1, 1, [], [], symbol="ETHUSDT"), "unconfigured symbol 'ETHUSDT'"),
        (event(1, 1, [["1"]], []), r"\[price, size\]"),
        (
            combined({"e": "depthUpdate", "E": 1, "s": "BNBBTC", "U": "1", "u": 1, "b": [], "a": []}),
            "'U' must be int",
        ),
        (orjson.dumps({"stream": "bnbbtc@trade", "data": {}}), "unexpected stream"),
    ],
)
def test_malformed_event_is_a_parse_error_that_changes_nothing(
    parser: DepthParser, frame: bytes, error: str
) -> None:
    synced(parser)

    with pytest.raises(ParseError, match=error):
        parser.parse(frame, 3)
    (quote,) = parser.parse(event(101, 101, [], []), 4)
    assert quote.seq == 101


def test_server_shutdown_and_responses_keep_their_meaning_in_depth_mode(
    parser: DepthParser, recorded: Any
) -> None:
    with pytest.raises(ReconnectRequested):
        parser.parse(recorded.text(VENUE, "binance-serverShutdown-combined.json"), 1)
    assert parser.parse(b'{"result": null, "id": 1}', 1) == []


# --- adapter and REST ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "limit", "weight"),
    [(1, 100, 5), (100, 100, 5), (101, 500, 25), (1000, 1000, 50), (5000, 5000, 250)],
)
def test_snapshot_limit_is_the_cheapest_bracket_holding_the_depth(
    depth: int, limit: int, weight: int
) -> None:
    assert (snapshot_limit(depth), snapshot_weight(snapshot_limit(depth))) == (limit, weight)


def test_depth_adapter_subscribes_diff_streams_and_parses_depth() -> None:
    adapter = BinanceAdapter(["BTC-USDT", "BNB-BTC"], depth=10)

    (message,) = [orjson.loads(m) for m in adapter.subscribe_messages()]

    assert message["params"] == ["btcusdt@depth@100ms", "bnbbtc@depth@100ms"]
    assert isinstance(adapter.new_parser(), DepthParser)
    assert adapter.rest_url == "https://api.binance.com"
    assert adapter.resync_messages("BTC-USDT") is None


@pytest.mark.parametrize("depth", [0, -1, 5001, True])
def test_depth_out_of_range_is_rejected(depth: int) -> None:
    with pytest.raises(ValueError, match=r"depth must be an integer in 1\.\.5000"):
        BinanceAdapter(["BTC-USDT"], depth=depth)


def test_rest_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="rest_url must start with http"):
        BinanceAdapter(["BTC-USDT"], rest_url="ftp://example.com", depth=5)


async def test_top_of_book_adapter_fetches_no_snapshot() -> None:
    with pytest.raises(NotImplementedError):
        await BinanceAdapter(["BTC-USDT"]).fetch_snapshot("BTC-USDT")


@contextlib.asynccontextmanager
async def rest_server(handler: Any) -> AsyncIterator[str]:
    """Serve `handler` at /api/v3/depth on a free 127.0.0.1 port; yield the base URL."""
    app = web.Application()
    app.router.add_get("/api/v3/depth", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_fetch_snapshot_asks_for_the_venue_symbol_with_the_depth_limit(
    documented_snapshot: bytes,
) -> None:
    seen: list[dict[str, str]] = []

    async def depth(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return web.Response(body=documented_snapshot, headers={"X-MBX-USED-WEIGHT-1M": "5"})

    async with rest_server(depth) as url:
        adapter = BinanceAdapter(["BNB-BTC"], rest_url=url + "/", depth=150)
        body = await adapter.fetch_snapshot("BNB-BTC")
        await adapter.close()
        await adapter.close()

    assert body == documented_snapshot
    assert seen == [{"symbol": "BNBBTC", "limit": "500"}]


async def test_http_error_is_a_venue_error_naming_the_status() -> None:
    async def depth(request: web.Request) -> web.Response:
        return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)

    async with rest_server(depth) as url:
        snapshots = DepthSnapshots(url, 5)
        with pytest.raises(VenueError, match=r"HTTP 400.*Invalid symbol"):
            await snapshots.fetch("BNBBTC")
        await snapshots.close()


async def test_refused_connection_is_a_venue_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    snapshots = DepthSnapshots(f"http://127.0.0.1:{port}", 5)

    with pytest.raises(VenueConnectionError, match="failed"):
        await snapshots.fetch("BNBBTC")
    await snapshots.close()


class FakeTime:
    """A wall clock that only moves when the code under test sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_rate_limit_answer_blocks_requests_for_its_retry_after(documented_snapshot: bytes) -> None:
    answers = [web.Response(status=429, headers={"Retry-After": "7"}), web.Response(body=documented_snapshot)]

    async def depth(request: web.Request) -> web.Response:
        return answers.pop(0)

    fake = FakeTime(1_000_000.0)
    async with rest_server(depth) as url:
        snapshots = DepthSnapshots(url, 5, wall_clock=fake.clock, sleep=fake.sleep)
        with pytest.raises(VenueError, match="HTTP 429"):
            await snapshots.fetch("BNBBTC")
        assert await snapshots.fetch("BNBBTC") == documented_snapshot
        await snapshots.close()

    assert fake.sleeps == [7.0]


async def test_used_weight_near_the_budget_holds_the_next_request_until_the_next_minute(
    documented_snapshot: bytes,
) -> None:
    used = iter(["2998", "5", "5"])

    async def depth(request: web.Request) -> web.Response:
        return web.Response(body=documented_snapshot, headers={"X-MBX-USED-WEIGHT-1M": next(used)})

    fake = FakeTime(60.0 * 1000 + 45.0)  # 45 s into a minute
    async with rest_server(depth) as url:
        snapshots = DepthSnapshots(url, 5, wall_clock=fake.clock, sleep=fake.sleep)
        await snapshots.fetch("BNBBTC")
        await snapshots.fetch("BNBBTC")
        await snapshots.fetch("BNBBTC")
        await snapshots.close()

    assert fake.sleeps == [15.0]
