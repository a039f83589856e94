"""The shared StreamRunner: backoff, and real loopback WebSocket servers for its connection life cycle."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal as D
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
import structlog
from aiohttp import web
from prometheus_client import REGISTRY
from websockets.asyncio.server import ServerConnection, serve

from connectors.binance import BinanceAdapter
from connectors.bybit import BybitAdapter
from connectors.stream import StreamRunner, backoff_delay
from connectors.types import Quote

Handler = Callable[[ServerConnection], Awaitable[None]]


class MaxRandom(random.Random):
    """An rng whose jitter always picks the longest delay, so any backoff would stall a test."""

    def __init__(self) -> None:
        super().__init__(0)
        self.drawn = asyncio.Event()

    def uniform(self, a: float, b: float) -> float:
        self.drawn.set()
        return b


def book_ticker(update_id: int, symbol: str = "BTCUSDT") -> bytes:
    """Return a combined-stream bookTicker frame of the documented shape."""
    data = {"u": update_id, "s": symbol, "b": "25.35190000", "B": "31.21", "a": "25.36520000", "A": "40.66"}
    return orjson.dumps({"stream": f"{symbol.lower()}@bookTicker", "data": data})


SERVER_SHUTDOWN = orjson.dumps(
    {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": 1770123456789}}
)


def metric(name: str, venue: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, {"venue": venue, **labels})
    return 0.0 if value is None else value


@contextlib.asynccontextmanager
async def loopback(handler: Handler) -> AsyncIterator[str]:
    """Serve `handler` on a free 127.0.0.1 port and yield the ws:// base URL."""
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def running(runner: StreamRunner) -> AsyncIterator[asyncio.Task[None]]:
    """Run the runner as a task for the block, then cancel it."""
    task = asyncio.create_task(runner.run(), name="runner-under-test")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Collector:
    """Collect quotes and wake the test once enough have arrived."""

    def __init__(self, wanted: int) -> None:
        self.quotes: list[Quote] = []
        self.wanted = wanted
        self.done = asyncio.Event()

    def __call__(self, quote: Quote) -> None:
        self.quotes.append(quote)
        if len(self.quotes) >= self.wanted:
            self.done.set()


# --- backoff ------------------------------------------------------------------------------------


def test_backoff_stays_within_the_capped_exponential_ceiling() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        ceiling = min(30.0, 0.25 * 2**attempt)
        delays = [backoff_delay(attempt, initial_s=0.25, max_s=30.0, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter: the delays spread over the whole range, not clustered at the ceiling.
        assert min(delays) < 0.1 * ceiling and max(delays) > 0.9 * ceiling


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    first = [backoff_delay(a, initial_s=0.25, max_s=30.0, rng=random.Random(42)) for a in range(8)]
    second = [backoff_delay(a, initial_s=0.25, max_s=30.0, rng=random.Random(42)) for a in range(8)]

    assert first == second


def test_backoff_after_days_of_failures_stays_at_the_cap() -> None:
    assert backoff_delay(100_000, initial_s=0.25, max_s=30.0, rng=MaxRandom()) == 30.0


@pytest.mark.parametrize("name", ["silence_timeout_s", "backoff_initial_s", "backoff_max_s"])
def test_non_positive_durations_are_rejected(name: str) -> None:
    durations: dict[str, Any] = {name: 0.0}
    with pytest.raises(ValueError, match=name):
        StreamRunner(BinanceAdapter(["BTC-USDT"]), lambda quote: None, **durations)


def test_new_runner_is_idle() -> None:
    runner = StreamRunner(BinanceAdapter(["BTC-USDT"]), lambda quote: None)

    assert (runner.state, runner.connects, runner.last_frame_monotonic) == ("idle", 0, None)


# --- loopback servers ---------------------------------------------------------------------------


async def test_garbage_frame_is_counted_and_skipped_while_quotes_keep_flowing() -> None:
    subscribed: list[Any] = []

    async def handler(ws: ServerConnection) -> None:
        subscribed.append(orjson.loads(await ws.recv()))
        for frame in (book_ticker(1), b"\x00not json{", book_ticker(2)):
            await ws.send(frame.decode("utf-8", "replace"))
        await ws.wait_closed()

    parse_errors_before = metric("smartroute_ws_parse_errors_total", "binance")
    messages_before = metric("smartroute_ws_messages_total", "binance")
    collector = Collector(wanted=2)
    async with asyncio.timeout(5), loopback(handler) as url:
        runner = StreamRunner(BinanceAdapter(["BTC-USDT"], ws_url=url), collector, wall_clock_ns=lambda: 42)
        with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            async with running(runner):
                await collector.done.wait()
                assert (runner.state, runner.connects) == ("streaming", 1)
                assert runner.last_frame_monotonic is not None
                assert metric("smartroute_ws_connected", "binance") == 1.0

    assert subscribed == [{"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 1}]
    assert [(q.symbol, q.seq, q.received_ns) for q in collector.quotes] == [
        ("BTC-USDT", 1, 42),
        ("BTC-USDT", 2, 42),
    ]
    assert metric("smartroute_ws_parse_errors_total", "binance") == parse_errors_before + 1
    assert metric("smartroute_ws_messages_total", "binance") == messages_before + 3
    assert metric("smartroute_ws_last_message_timestamp_seconds", "binance") == 42 / 1e9
    events = [entry["event"] for entry in logs]
    assert events[:3] == ["ws_connecting", "ws_connected", "ws_subscribed"]
    assert events.count("ws_parse_error") == 1
    assert all(entry["venue"] == "binance" for entry in logs)
    assert runner.state == "stopped"


async def test_parse_errors_are_logged_first_and_then_every_1000th() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        for _ in range(1000):
            await ws.send("garbage")
        await ws.send(book_ticker(1))
        await ws.wait_closed()

    collector = Collector(wanted=1)
    async with asyncio.timeout(5), loopback(handler) as url:
        runner = StreamRunner(BinanceAdapter(["BTC-USDT"], ws_url=url), collector)
        with structlog.testing.capture_logs() as logs:
            async with running(runner):
                await collector.done.wait()

    errors = [entry for entry in logs if entry["event"] == "ws_parse_error"]
    assert [entry["parse_errors"] for entry in errors] == [1, 1000]
    assert errors[0]["frame"] == "garbage"


async def test_server_close_reconnects_and_resubscribes() -> None:
    subscribes: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        subscribes.append(str(await ws.recv()))
        await ws.send(book_ticker(len(subscribes)))
        if len(subscribes) == 1:
            await ws.close()
        await ws.wait_closed()

    closed_before = metric("smartroute_ws_reconnects_total", "binance", reason="closed")
    collector = Collector(wanted=2)
    async with asyncio.timeout(5), loopback(handler) as url:
        adapter = BinanceAdapter(["BTC-USDT"], ws_url=url)
        runner = StreamRunner(adapter, collector, backoff_initial_s=0.01)
        async with running(runner):
            await collector.done.wait()
            assert runner.connects == 2

    assert subscribes == adapter.subscribe_messages() * 2
    assert [q.seq for q in collector.quotes] == [1, 2]
    assert metric("smartroute_ws_reconnects_total", "binance", reason="closed") == closed_before + 1


async def test_dropped_connection_withdraws_the_venues_books_at_once_and_counts_an_error() -> None:
    connections = 0
    second_open = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await ws.recv()
        if connections == 1:
            await ws.send(book_ticker(1))
            await asyncio.sleep(0.05)
            ws.transport.abort()  # gone without a close frame, as when a link dies
            return
        second_open.set()
        await ws.wait_closed()  # open, but silent: delivers nothing

    disconnects: list[tuple[str, tuple[str, ...]]] = []
    error_before = metric("smartroute_ws_reconnects_total", "binance", reason="error")
    collector = Collector(wanted=1)
    async with asyncio.timeout(5), loopback(handler) as url:
        adapter = BinanceAdapter(["BTC-USDT", "ETH-USDT"], ws_url=url)
        runner = StreamRunner(
            adapter,
            collector,
            backoff_initial_s=0.01,
            on_disconnect=lambda venue, symbols: disconnects.append((venue, tuple(symbols))),
        )
        async with running(runner):
            await collector.done.wait()
            await second_open.wait()
            # The first connection's books were withdrawn before the second one opened.
            assert disconnects == [("binance", ("BTC-USDT", "ETH-USDT"))]
    # The silent connection delivered nothing: ending it withdraws nothing more.
    assert disconnects == [("binance", ("BTC-USDT", "ETH-USDT"))]
    assert metric("smartroute_ws_reconnects_total", "binance", reason="error") == error_before + 1


async def test_silent_connection_is_reopened_after_the_silence_timeout() -> None:
    opened: list[float] = []
    reopened = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        opened.append(time.monotonic())
        if len(opened) == 2:
            reopened.set()
        await ws.wait_closed()  # open, but never a frame

    silence_before = metric("smartroute_ws_reconnects_total", "binance", reason="silence")
    async with asyncio.timeout(5), loopback(handler) as url:
        runner = StreamRunner(
            BinanceAdapter(["BTC-USDT"], ws_url=url),
            lambda q: None,
            silence_timeout_s=0.3,
            backoff_initial_s=0.01,
        )
        with structlog.testing.capture_logs() as logs:
            async with running(runner):
                await reopened.wait()

    assert 0.3 <= opened[1] - opened[0] < 1.5
    assert metric("smartroute_ws_reconnects_total", "binance", reason="silence") == silence_before + 1
    assert "ws_silence_reconnect" in [entry["event"] for entry in logs]


async def test_server_shutdown_reconnects_at_once_without_backoff() -> None:
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        await ws.recv()
        connections += 1
        await ws.send(SERVER_SHUTDOWN if connections == 1 else book_ticker(7))
        await ws.wait_closed()

    shutdown_before = metric("smartroute_ws_reconnects_total", "binance", reason="server_shutdown")
    collector = Collector(wanted=1)
    async with asyncio.timeout(5), loopback(handler) as url:
        # Any backoff would pick 60 s and blow the 5 s budget.
        runner = StreamRunner(
            BinanceAdapter(["BTC-USDT"], ws_url=url),
            collector,
            backoff_initial_s=60.0,
            backoff_max_s=60.0,
            rng=MaxRandom(),
        )
        with structlog.testing.capture_logs() as logs:
            async with running(runner):
                await collector.done.wait()

    assert connections == 2
    assert [q.seq for q in collector.quotes] == [7]
    assert (
        metric("smartroute_ws_reconnects_total", "binance", reason="server_shutdown") == shutdown_before + 1
    )
    events = [entry["event"] for entry in logs]
    assert "ws_server_shutdown" in events and "ws_backoff" not in events


async def test_connection_is_replaced_at_its_maximum_age_without_backoff() -> None:
    class ShortLivedBinance(BinanceAdapter):
        max_connection_age_s: ClassVar[float | None] = 0.3

    connections = 0
    second = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        await ws.recv()
        connections += 1
        if connections == 2:
            second.set()
        with contextlib.suppress(Exception):
            for update_id in range(1, 1000):
                await ws.send(book_ticker(update_id))
                await asyncio.sleep(0.02)

    max_age_before = metric("smartroute_ws_reconnects_total", "binance", reason="max_age")
    async with asyncio.timeout(5), loopback(handler) as url:
        runner = StreamRunner(
            ShortLivedBinance(["BTC-USDT"], ws_url=url),
            lambda q: None,
            backoff_initial_s=60.0,
            backoff_max_s=60.0,
            rng=MaxRandom(),
        )
        async with running(runner):
            await second.wait()

    assert metric("smartroute_ws_reconnects_total", "binance", reason="max_age") == max_age_before + 1


async def test_keepalive_pings_are_sent_on_schedule(recorded_level1_snapshot: str) -> None:
    class FastPingBybit(BybitAdapter):
        keepalive_interval_s: ClassVar[float | None] = 0.05

    pings: list[str] = []
    two_pings = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(recorded_level1_snapshot)
        async for message in ws:
            pings.append(str(message))
            await ws.send('{"success":true,"ret_msg":"pong","conn_id":"c","op":"ping"}')
            if len(pings) == 2:
                two_pings.set()

    collector = Collector(wanted=1)
    async with asyncio.timeout(5), loopback(handler) as url:
        adapter = FastPingBybit(["BTC-USDT"], ws_url=url)
        runner = StreamRunner(adapter, collector)
        async with running(runner):
            await two_pings.wait()

    assert pings[:2] == [adapter.keepalive_message()] * 2
    assert [q.symbol for q in collector.quotes] == ["BTC-USDT"]


async def test_subscribe_messages_are_paced_for_binance_rate_limit() -> None:
    arrivals: list[float] = []
    both = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        async for _ in ws:
            arrivals.append(time.monotonic())
            if len(arrivals) == 2:
                both.set()

    async with asyncio.timeout(5), loopback(handler) as url:
        adapter = BinanceAdapter([f"C{n}-USDT" for n in range(201)], ws_url=url)
        async with running(StreamRunner(adapter, lambda q: None)):
            await both.wait()

    assert arrivals[1] - arrivals[0] >= BinanceAdapter.subscribe_interval_s * 0.9


async def test_refused_connection_backs_off_and_counts_an_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error_before = metric("smartroute_ws_reconnects_total", "bybit", reason="error")
    rng = MaxRandom()
    runner = StreamRunner(
        BybitAdapter(["BTC-USDT"], ws_url=f"ws://127.0.0.1:{port}"), lambda q: None, rng=rng
    )

    async with asyncio.timeout(5):
        with structlog.testing.capture_logs() as logs:
            async with running(runner):
                await rng.drawn.wait()
                assert runner.state == "backoff"

    assert metric("smartroute_ws_reconnects_total", "bybit", reason="error") == error_before + 1
    backoffs = [entry for entry in logs if entry["event"] == "ws_backoff"]
    assert backoffs and backoffs[0]["reason"] == "error" and "cannot connect" in backoffs[0]["detail"]
    assert runner.connects == 0


async def test_exception_from_on_quote_ends_the_run() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(book_ticker(1))
        await ws.wait_closed()

    def broken(quote: Quote) -> None:
        raise RuntimeError("caller bug")

    async with asyncio.timeout(5), loopback(handler) as url:
        runner = StreamRunner(BinanceAdapter(["BTC-USDT"], ws_url=url), broken)
        with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="caller bug")):
            await runner.run()

    assert runner.state == "stopped"
    assert metric("smartroute_ws_connected", "binance") == 0.0


@pytest.fixture
def recorded_level1_snapshot() -> str:
    """Return the recorded Bybit `orderbook.1.BTCUSDT` snapshot frame."""
    path = Path(__file__).parents[1] / "connectors" / "frames" / "bybit" / "bbo.jsonl"
    return path.read_text(encoding="utf-8").splitlines()[0]


async def test_on_frame_sees_every_raw_frame_with_its_receive_time_before_parsing() -> None:
    frames: list[str | bytes] = [b'{"result":null,"id":1}', b"garbage", book_ticker(5)]
    seen: list[tuple[str | bytes, int]] = []
    collector = Collector(1)
    clock = iter(range(100, 200))

    async def serve_frames(ws: ServerConnection) -> None:
        await ws.recv()  # the subscribe message
        for frame in frames:
            await ws.send(frame)
        await asyncio.sleep(5)

    async with loopback(serve_frames) as url:
        runner = StreamRunner(
            BinanceAdapter(["BTC-USDT"], ws_url=url),
            collector,
            wall_clock_ns=lambda: next(clock),
            on_frame=lambda frame, ns: seen.append((frame, ns)),
        )
        async with running(runner), asyncio.timeout(5):
            await collector.done.wait()
    # Garbage too: a recording keeps exactly what the venue sent, in order, with its receive time.
    assert seen == [(frame, ns) for frame, ns in zip(frames, (100, 101, 102), strict=True)]
    assert len(collector.quotes) == 1


# --- book resyncs ---------------------------------------------------------------------------------


def depth_event(first: int, last: int, bids: list[list[str]], asks: list[list[str]]) -> str:
    """Return a combined-stream BTCUSDT diff event of the documented shape."""
    data = {
        "e": "depthUpdate",
        "E": 1672515782136,
        "s": "BTCUSDT",
        "U": first,
        "u": last,
        "b": bids,
        "a": asks,
    }
    return orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data}).decode()


@contextlib.asynccontextmanager
async def depth_rest(bodies: list[dict[str, Any] | None], calls: list[dict[str, str]]) -> AsyncIterator[str]:
    """Serve `GET /api/v3/depth` on a free 127.0.0.1 port, answering `bodies` in turn (None: HTTP 500)."""

    async def depth(request: web.Request) -> web.Response:
        calls.append(dict(request.query))
        body = bodies.pop(0) if bodies else None
        if body is None:
            return web.json_response({"code": -1000, "msg": "An unknown error occurred."}, status=500)
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/api/v3/depth", depth)
    site_runner = web.AppRunner(app)
    await site_runner.setup()
    site = web.TCPSite(site_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await site_runner.cleanup()


class Timeline:
    """Record quotes and book invalidations in the order the runner reports them."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()

    def quote(self, quote: Quote) -> None:
        self.entries.append(("quote", quote))
        self.changed.set()

    def invalid(self, venue: str, symbol: str, reason: str) -> None:
        self.entries.append(("invalid", (venue, symbol, reason)))
        self.changed.set()

    def quotes(self) -> list[Quote]:
        return [value for kind, value in self.entries if kind == "quote"]

    async def until_seq(self, seq: int) -> None:
        while not any(quote.seq == seq for quote in self.quotes()):
            self.changed.clear()
            await self.changed.wait()


async def test_binance_gap_triggers_one_snapshot_resync_and_serves_only_the_new_book() -> None:
    old_book = {"lastUpdateId": 100, "bids": [["10", "1"]], "asks": [["11", "1"]]}
    new_book = {"lastUpdateId": 200, "bids": [["20", "2"]], "asks": [["21", "2"]]}
    frames: asyncio.Queue[str | None] = asyncio.Queue()
    rest_calls: list[dict[str, str]] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        while (frame := await frames.get()) is not None:
            await ws.send(frame)

    gaps_before = metric("smartroute_book_gaps_total", "binance")
    resyncs_before = metric("smartroute_book_resyncs_total", "binance", reason="gap")
    timeline = Timeline()
    async with (
        asyncio.timeout(10),
        loopback(handler) as url,
        depth_rest([old_book, new_book], rest_calls) as rest,
    ):
        adapter = BinanceAdapter(["BTC-USDT"], ws_url=url, rest_url=rest, depth=5)
        runner = StreamRunner(adapter, timeline.quote, on_book_invalid=timeline.invalid)
        try:
            with structlog.testing.capture_logs() as logs:
                async with running(runner):
                    frames.put_nowait(depth_event(100, 101, [["10", "3"]], []))
                    await timeline.until_seq(101)
                    frames.put_nowait(depth_event(150, 150, [["10", "4"]], []))  # 102..149 lost
                    await timeline.until_seq(200)
                    frames.put_nowait(depth_event(201, 201, [], [["21", "5"]]))
                    await timeline.until_seq(201)
                    assert runner.connects == 1  # resynced on the open connection
        finally:
            frames.put_nowait(None)  # lets the server's handler end

    assert rest_calls == [{"symbol": "BTCUSDT", "limit": "100"}] * 2
    kinds = [(kind, value if kind == "invalid" else value.seq) for kind, value in timeline.entries]
    assert kinds == [
        ("quote", 101),
        ("invalid", ("binance", "BTC-USDT", "gap")),
        ("quote", 200),
        ("quote", 201),
    ]
    after = timeline.quotes()[1:]
    assert [(q.bids, q.asks) for q in after] == [
        (((D("20"), D("2")),), ((D("21"), D("2")),)),
        (((D("20"), D("2")),), ((D("21"), D("5")),)),
    ]
    assert metric("smartroute_book_gaps_total", "binance") == gaps_before + 1
    assert metric("smartroute_book_resyncs_total", "binance", reason="gap") == resyncs_before + 1
    (invalid_log,) = [entry for entry in logs if entry["event"] == "book_invalid"]
    assert (invalid_log["symbol"], invalid_log["reason"], invalid_log["resync"]) == (
        "BTC-USDT",
        "gap",
        "snapshot",
    )


async def test_failed_snapshot_fetch_is_counted_and_retried() -> None:
    book = {"lastUpdateId": 7, "bids": [["10", "1"]], "asks": [["11", "1"]]}
    rest_calls: list[dict[str, str]] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(depth_event(7, 8, [], []))
        await ws.wait_closed()

    failures_before = metric("smartroute_book_snapshot_failures_total", "binance")
    timeline = Timeline()
    async with asyncio.timeout(10), loopback(handler) as url, depth_rest([None, book], rest_calls) as rest:
        adapter = BinanceAdapter(["BTC-USDT"], ws_url=url, rest_url=rest, depth=5)
        runner = StreamRunner(adapter, timeline.quote, backoff_initial_s=0.01)
        with structlog.testing.capture_logs() as logs:
            async with running(runner):
                await timeline.until_seq(8)

    assert len(rest_calls) == 2
    assert metric("smartroute_book_snapshot_failures_total", "binance") == failures_before + 1
    (failed,) = [entry for entry in logs if entry["event"] == "book_snapshot_failed"]
    assert "HTTP 500" in failed["error"]


async def test_bybit_gap_resubscribes_the_symbol_and_serves_only_the_new_snapshot() -> None:
    def book_frame(kind: str, u: int, bids: list[list[str]], asks: list[list[str]]) -> str:
        data = {"s": "BTCUSDT", "b": bids, "a": asks, "u": u, "seq": 1}
        message = {"topic": "orderbook.50.BTCUSDT", "type": kind, "ts": 1672304484978, "data": data, "cts": 1}
        return orjson.dumps(message).decode()

    received: list[Any] = []

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            request = orjson.loads(message)
            received.append((request["op"], request["args"]))
            if request["op"] != "subscribe":
                continue
            if len(received) == 1:
                await ws.send(book_frame("snapshot", 10, [["100", "1"]], [["101", "1"]]))
                await ws.send(book_frame("delta", 11, [["100", "2"]], []))
                await ws.send(book_frame("delta", 13, [["100", "3"]], []))  # u=12 lost
                await ws.send(book_frame("delta", 14, [["100", "4"]], []))  # old subscription, in flight
            else:
                await ws.send(book_frame("snapshot", 40, [["90", "1"]], [["91", "1"]]))

    gaps_before = metric("smartroute_book_gaps_total", "bybit")
    timeline = Timeline()
    async with asyncio.timeout(10), loopback(handler) as url:
        runner = StreamRunner(
            BybitAdapter(["BTC-USDT"], ws_url=url, depth=50), timeline.quote, on_book_invalid=timeline.invalid
        )
        async with running(runner):
            await timeline.until_seq(40)
            assert runner.connects == 1

    topic = ["orderbook.50.BTCUSDT"]
    assert received == [("subscribe", topic), ("unsubscribe", topic), ("subscribe", topic)]
    kinds = [(kind, value if kind == "invalid" else value.seq) for kind, value in timeline.entries]
    assert kinds == [("quote", 10), ("quote", 11), ("invalid", ("bybit", "BTC-USDT", "gap")), ("quote", 40)]
    assert timeline.quotes()[-1].bids == ((D("90"), D("1")),)
    assert metric("smartroute_book_gaps_total", "bybit") == gaps_before + 1


async def test_venue_without_in_place_resync_reopens_the_connection() -> None:
    class ReconnectingBybit(BybitAdapter):
        def resync_messages(self, symbol: str) -> list[str] | None:
            return None

    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        await ws.recv()
        connections += 1
        await ws.send(
            orjson.dumps(
                {
                    "topic": "orderbook.1.BTCUSDT",
                    "type": "snapshot",
                    "ts": 1,
                    "cts": 1,
                    "data": {"s": "BTCUSDT", "b": [["101", "1"]], "a": [["100", "1"]], "u": 5, "seq": 1},
                }
            ).decode()
            if connections == 1
            else orjson.dumps(
                {
                    "topic": "orderbook.1.BTCUSDT",
                    "type": "snapshot",
                    "ts": 1,
                    "cts": 1,
                    "data": {"s": "BTCUSDT", "b": [["99", "1"]], "a": [["100", "1"]], "u": 6, "seq": 1},
                }
            ).decode()
        )
        await ws.wait_closed()

    reopened_before = metric("smartroute_ws_reconnects_total", "bybit", reason="book_invalid")
    crossed_before = metric("smartroute_book_crossed_total", "bybit")
    timeline = Timeline()
    async with asyncio.timeout(10), loopback(handler) as url:
        runner = StreamRunner(
            ReconnectingBybit(["BTC-USDT"], ws_url=url),
            timeline.quote,
            on_book_invalid=timeline.invalid,
            backoff_initial_s=0.01,
        )
        async with running(runner):
            await timeline.until_seq(6)

    assert connections == 2
    kinds = [(kind, value if kind == "invalid" else value.seq) for kind, value in timeline.entries]
    assert kinds == [("invalid", ("bybit", "BTC-USDT", "crossed")), ("quote", 6)]
    assert metric("smartroute_ws_reconnects_total", "bybit", reason="book_invalid") == reopened_before + 1
    assert metric("smartroute_book_crossed_total", "bybit") == crossed_before + 1


def test_book_metrics_exist_at_zero_for_every_venue() -> None:
    StreamRunner(BybitAdapter(["BTC-USDT"]), lambda quote: None)

    for name in (
        "smartroute_book_gaps_total",
        "smartroute_book_checksum_failures_total",
        "smartroute_book_crossed_total",
    ):
        assert REGISTRY.get_sample_value(name, {"venue": "bybit"}) is not None
    for reason in ("gap", "checksum", "crossed", "sequence"):
        assert (
            REGISTRY.get_sample_value("smartroute_book_resyncs_total", {"venue": "bybit", "reason": reason})
            is not None
        )


class CeilingRecorder(random.Random):
    """An rng that records each backoff ceiling asked for and waits not at all."""

    def __init__(self) -> None:
        super().__init__(0)
        self.ceilings: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.ceilings.append(b)
        return 0.0


async def test_book_that_fails_again_and_again_is_resynced_with_backoff_not_in_a_loop() -> None:
    def snapshot(u: int, bid: str) -> str:
        data = {"s": "BTCUSDT", "b": [[bid, "1"]], "a": [["100", "1"]], "u": u, "seq": 1}
        message = {"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": 1, "data": data, "cts": 1}
        return orjson.dumps(message).decode()

    subscribes = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal subscribes
        async for message in ws:
            if orjson.loads(message)["op"] == "subscribe":
                subscribes += 1
                # The venue serves a crossed book three times over, then a sound one.
                await ws.send(snapshot(subscribes, "101" if subscribes <= 3 else "99"))

    rng = CeilingRecorder()
    timeline = Timeline()
    async with asyncio.timeout(10), loopback(handler) as url:
        runner = StreamRunner(
            BybitAdapter(["BTC-USDT"], ws_url=url, depth=50),
            timeline.quote,
            on_book_invalid=timeline.invalid,
            rng=rng,
            backoff_initial_s=0.25,
        )
        async with running(runner):
            await timeline.until_seq(4)

    assert [kind for kind, _ in timeline.entries] == ["invalid"] * 3 + ["quote"]
    # The first resync goes at once; the next ones wait a growing, jittered delay.
    assert rng.ceilings == [0.25, 0.5]
