"""The exchange simulator speaks Binance's and Bybit's documented protocols to a plain WebSocket client.

Depth, REST snapshots and faults: test_sim_depth.py; OKX, Coinbase and Kraken: test_sim_venues.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from connectors.sim import (
    SIM_VENUES,
    ExchangeSimulator,
    MarketModel,
    SimulatorError,
    SubscriptionTimeout,
    VenueRules,
)
from connectors.sim.binance import BinanceProtocol
from connectors.sim.market import cross_venue_spread_bps, spec_for
from connectors.sim.protocol import RateWindow
from connectors.types import VENUE_IDS

pytestmark = pytest.mark.integration

FRAMES = Path(__file__).resolve().parents[1] / "connectors" / "frames"  # copies of the documented samples
NOW_NS = 1_770_123_456_789_000_000
NOW_MS = NOW_NS // 1_000_000
QUOTE = ("64000.10", "0.50000", "64000.20", "1.25000")
FAST_BYBIT = VenueRules(idle_timeout_s=600.0, repush_interval_s=0.2)


def sample(name: str) -> Any:
    return json.loads((FRAMES / name.split("-", maxsplit=1)[0] / name).read_text())


def sample_lines(name: str) -> list[Any]:
    return [
        json.loads(line)
        for line in (FRAMES / name.split("-", maxsplit=1)[0] / name).read_text().splitlines()
        if line.strip()
    ]


async def recv_json(ws: ClientConnection, timeout: float = 2.0) -> Any:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        return orjson.loads(await ws.recv())


async def assert_nothing_arrives(ws: ClientConnection, window: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(window):
            await ws.recv()


async def assert_closed(ws: ClientConnection, timeout: float = 3.0) -> ConnectionClosed:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await ws.recv()
    return info.value


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    async with asyncio.timeout(10):
        simulator = ExchangeSimulator(
            autoplay=False,
            seed=1,
            rules={"bybit": FAST_BYBIT},
            shutdown_grace_s=0.05,
            clock_ns=lambda: NOW_NS,
        )
        await simulator.start()
    try:
        yield simulator
    finally:
        async with asyncio.timeout(10):
            await simulator.close()


async def binance_subscribe(ws: ClientConnection, *streams: str, request_id: object = 1) -> Any:
    await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": list(streams), "id": request_id}).decode())
    return await recv_json(ws)


async def bybit_send(ws: ClientConnection, op: str, *args: str, req_id: str = "r1") -> Any:
    await ws.send(orjson.dumps({"req_id": req_id, "op": op, "args": list(args)}).decode())
    return await recv_json(ws)


# -- Binance ------------------------------------------------------------------------------------


async def test_binance_combined_subscribe_is_acked_and_quote_arrives_wrapped_without_event_fields(
    sim: ExchangeSimulator,
) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("binance") + "/stream") as ws:
        assert await binance_subscribe(ws, "btcusdt@bookTicker", request_id=1) == {"result": None, "id": 1}
        await sim.wait_subscribed("binance", "BTC-USDT")
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        first = await recv_json(ws)
        await sim.push_quote("binance", "BTC-USDT", Decimal("64000.30"), Decimal("2"), "64000.40", "0.00001")
        second = await recv_json(ws)

    assert set(first) == {"stream", "data"} and first["stream"] == "btcusdt@bookTicker"
    data = first["data"]
    assert list(data) == list(sample("binance-bookTicker.json"))  # u s b B a A, no e/E
    assert (data["s"], data["b"], data["B"], data["a"], data["A"]) == ("BTCUSDT", *QUOTE)
    assert isinstance(data["u"], int)
    assert second["data"]["u"] > data["u"]
    assert (second["data"]["b"], second["data"]["B"], second["data"]["A"]) == ("64000.30", "2", "0.00001")
    assert sim.subscribe_requests("binance") == [
        {"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 1}
    ]


async def test_binance_url_streams_subscribe_without_a_control_message(sim: ExchangeSimulator) -> None:
    url = sim.ws_url("binance") + "/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker"
    async with asyncio.timeout(10), connect(url) as ws:
        await sim.wait_subscribed("binance", "ETH-USDT")
        await sim.wait_subscribed("binance", "BTC-USDT")
        await sim.push_quote("binance", "ETH-USDT", "3200.01", "1.5", "3200.02", "2.5")
        frame = await recv_json(ws)
    assert frame["stream"] == "ethusdt@bookTicker" and frame["data"]["s"] == "ETHUSDT"
    assert sim.subscribe_requests("binance") == []


async def test_binance_raw_ws_path_sends_the_bare_payload(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("binance") + "/ws/btcusdt@bookTicker") as ws:
        await sim.wait_subscribed("binance", "BTC-USDT")
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        data = await recv_json(ws)
    assert list(data) == ["u", "s", "b", "B", "a", "A"]
    assert data["b"] == "64000.10"


async def test_binance_set_property_combined_wraps_a_raw_connection(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("binance") + "/ws") as ws:
        await ws.send('{"method": "SET_PROPERTY", "params": ["combined", true], "id": 5}')
        assert await recv_json(ws) == {"result": None, "id": 5}
        await ws.send('{"method": "GET_PROPERTY", "params": ["combined"], "id": 2}')
        assert await recv_json(ws) == {"result": True, "id": 2}
        await binance_subscribe(ws, "btcusdt@bookTicker")
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        assert (await recv_json(ws))["stream"] == "btcusdt@bookTicker"


async def test_binance_list_subscriptions_reflects_subscribe_and_unsubscribe(sim: ExchangeSimulator) -> None:
    control = sample_lines("binance-ws-control.jsonl")
    async with asyncio.timeout(10), connect(sim.ws_url("binance") + "/stream") as ws:
        await ws.send(json.dumps(control[0]))  # SUBSCRIBE aggTrade + depth, id 1
        assert await recv_json(ws) == control[1]
        await ws.send(json.dumps(control[2]))  # UNSUBSCRIBE depth, id 312
        assert await recv_json(ws) == control[3]
        await ws.send(json.dumps(control[4]))  # LIST_SUBSCRIPTIONS, id 3
        assert await recv_json(ws) == control[5]
    assert sim.subscribe_requests("binance") == [control[0], control[2], control[4]]


async def test_binance_bad_requests_get_error_frames_and_the_connection_stays_open(
    sim: ExchangeSimulator,
) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("binance") + "/stream") as ws:
        await ws.send('{"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": true}')
        bad_id = await recv_json(ws)
        await ws.send('{"method": "SUBSCRIB", "params": [], "id": 7}')
        bad_method = await recv_json(ws)
        await ws.send("not json")
        bad_json = await recv_json(ws)
        await ws.send('{"params": [], "id": "abc"}')
        no_method = await recv_json(ws)
        await ws.send('{"method": "LIST_SUBSCRIPTIONS", "id": 8}')
        still_open = await recv_json(ws)
    assert bad_id == {
        "error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"},
        "id": None,
    }
    assert bad_method["id"] == 7 and bad_method["error"]["code"] == 2
    assert bad_method["error"]["msg"].startswith(
        "Invalid request: unknown variant `SUBSCRIB`, expected one of"
    )
    assert bad_json == {
        "error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"},
        "id": None,
    }
    assert no_method["id"] == "abc" and no_method["error"]["msg"].startswith("Invalid request: missing field")
    assert still_open == {"result": [], "id": 8}
    assert sim.subscribe_requests("binance")[2] == "not json"


@pytest.mark.parametrize(
    ("request_id", "accepted"),
    [(None, True), (2**63 - 1, True), (-(2**63), True), (2**63, False), ("a" * 36, True), ("a" * 37, False),
     ("id-1", False), (1.5, False)],
)  # fmt: skip
def test_binance_request_ids_follow_the_documented_formats(request_id: object, accepted: bool) -> None:
    protocol = BinanceProtocol("/ws", {"BTCUSDT": "BTC-USDT"}, "c1")
    reply = json.loads(
        protocol.handle(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": request_id})).frames[0]
    )
    assert ("result" in reply) is accepted


async def test_binance_more_than_five_messages_a_second_closes_the_connection(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("binance") + "/stream") as ws:
        for request_id in range(6):
            await ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": request_id}).decode())
        answers = []
        closed = None
        try:
            while True:
                answers.append(await recv_json(ws))
        except ConnectionClosed as exc:
            closed = exc
    assert len(answers) == 5
    assert closed is not None and closed.rcvd is not None and closed.rcvd.code == 1008


def test_rate_window_allows_five_per_second_and_refuses_the_sixth() -> None:
    window = RateWindow(5)
    assert all(window.hit(t) for t in (0.0, 0.1, 0.2, 0.3, 0.4))
    assert not window.hit(0.5)
    paced = RateWindow(5)
    assert all(paced.hit(i * 0.2) for i in range(50))  # exactly 5 a second, for 10 s


async def test_binance_server_shutdown_sends_the_documented_event_then_closes(sim: ExchangeSimulator) -> None:
    base = sim.ws_url("binance")
    async with asyncio.timeout(10), connect(base + "/stream") as combined, connect(base + "/ws") as raw:
        await combined.send('{"method": "LIST_SUBSCRIPTIONS", "id": 1}')
        await recv_json(combined)
        await raw.send('{"method": "LIST_SUBSCRIPTIONS", "id": 1}')
        await recv_json(raw)
        await sim.server_shutdown("binance")
        wrapped = await recv_json(combined)
        bare = await recv_json(raw)
        closed = await assert_closed(combined)
        await assert_closed(raw)
    documented = sample("binance-serverShutdown-combined.json")
    assert wrapped == {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": NOW_MS}}
    assert list(wrapped) == list(documented) and list(wrapped["data"]) == list(documented["data"])
    assert bare == {"e": "serverShutdown", "E": NOW_MS}
    assert closed.rcvd is not None and closed.rcvd.code == 1001
    with pytest.raises(SimulatorError):
        await sim.server_shutdown("bybit")


# -- Bybit --------------------------------------------------------------------------------------


async def test_bybit_subscribe_ack_and_pong_have_the_documented_spot_shape(sim: ExchangeSimulator) -> None:
    control = sample_lines("bybit-ws-control.jsonl")
    documented_ack, documented_pong = control[1], control[4]
    async with asyncio.timeout(10), connect(sim.ws_url("bybit")) as ws:
        ack = await bybit_send(ws, "subscribe", "orderbook.1.BTCUSDT", req_id="10001")
        await ws.send(json.dumps(control[3]))  # {"req_id": "100001", "op": "ping"}
        pong = await recv_json(ws)
    assert list(ack) == list(documented_ack)
    assert {**ack, "conn_id": "x"} == {**documented_ack, "conn_id": "x"}
    assert isinstance(ack["conn_id"], str) and ack["conn_id"]
    assert pong == {
        "success": True,
        "ret_msg": "pong",
        "conn_id": ack["conn_id"],
        "req_id": "100001",
        "op": "ping",
    }
    assert set(documented_pong) <= set(pong)


async def test_bybit_snapshot_has_the_documented_shape(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("bybit")) as ws:
        await bybit_send(ws, "subscribe", "orderbook.1.BTCUSDT")
        await sim.push_quote("bybit", "BTC-USDT", *QUOTE)
        frame = await recv_json(ws)
    documented = sample("bybit-orderbook-snapshot.json")
    assert list(frame) == list(documented) and list(frame["data"]) == list(documented["data"])
    assert (frame["topic"], frame["type"], frame["ts"], frame["cts"]) == (
        "orderbook.1.BTCUSDT",
        "snapshot",
        NOW_MS,
        NOW_MS,
    )
    data = frame["data"]
    assert (data["s"], data["b"], data["a"]) == (
        "BTCUSDT",
        [["64000.10", "0.50000"]],
        [["64000.20", "1.25000"]],
    )
    assert isinstance(data["u"], int) and isinstance(data["seq"], int)


async def test_bybit_new_subscription_gets_the_current_snapshot_at_once(sim: ExchangeSimulator) -> None:
    await sim.push_quote("bybit", "ETH-USDT", "3200.01", "1.5", "3200.02", "2.5")
    async with asyncio.timeout(10), connect(sim.ws_url("bybit")) as ws:
        ack = await bybit_send(ws, "subscribe", "orderbook.1.ETHUSDT")
        snapshot = await recv_json(ws)
    assert ack["success"] is True
    assert snapshot["topic"] == "orderbook.1.ETHUSDT" and snapshot["data"]["b"] == [["3200.01", "1.5"]]


async def test_bybit_unchanged_snapshot_is_re_pushed_with_the_same_update_id(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("bybit")) as ws:
        await bybit_send(ws, "subscribe", "orderbook.1.BTCUSDT")
        await sim.push_quote("bybit", "BTC-USDT", *QUOTE)
        first = await recv_json(ws)
        again = await recv_json(ws, timeout=2.0)  # re-push period is 0.2 s here (3 s by default)
    assert again["data"] == first["data"]
    assert again["type"] == "snapshot"


async def test_bybit_more_than_ten_args_are_refused_and_nothing_is_subscribed() -> None:
    symbols = [f"C{i}-USDT" for i in range(11)]
    async with (
        asyncio.timeout(10),
        ExchangeSimulator(("bybit",), symbols, autoplay=False) as sim,
        connect(sim.ws_url("bybit")) as ws,
    ):
        topics = [f"orderbook.1.C{i}USDT" for i in range(11)]
        refused = await bybit_send(ws, "subscribe", *topics, req_id="big")
        accepted = await bybit_send(ws, "subscribe", *topics[:10], req_id="ten")
        await sim.push_quote("bybit", "C10-USDT", "1.00", "1", "1.01", "1")
        await assert_nothing_arrives(ws)
    assert (
        refused["success"] is False and refused["ret_msg"] == "args size >10" and refused["op"] == "subscribe"
    )
    assert accepted["success"] is True


async def test_bybit_unknown_and_repeated_topics_get_failure_acks(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("bybit")) as ws:
        unknown = await bybit_send(ws, "subscribe", "orderbook.1.DOGEUSDT")
        other_depth = await bybit_send(ws, "subscribe", "orderbook.25.BTCUSDT")  # not a spot depth
        await bybit_send(ws, "subscribe", "orderbook.1.BTCUSDT")
        repeated = await bybit_send(ws, "subscribe", "orderbook.1.BTCUSDT")
        bad_op = await bybit_send(ws, "subscrbe", "orderbook.1.BTCUSDT")
        await ws.send("hello")
        garbage = await recv_json(ws)
    assert (
        unknown["success"] is False
        and unknown["ret_msg"] == "error:handler not found,topic:orderbook.1.DOGEUSDT"
    )
    assert other_depth["ret_msg"] == "error:handler not found,topic:orderbook.25.BTCUSDT"
    assert repeated["ret_msg"] == "error:already subscribed,topic:orderbook.1.BTCUSDT"
    assert bad_op["ret_msg"] == "error:invalid op"
    assert garbage["success"] is False and garbage["ret_msg"].startswith("Failed to decode incoming data")


async def test_bybit_unsubscribe_stops_the_data(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("bybit")) as ws:
        await bybit_send(ws, "subscribe", "orderbook.1.BTCUSDT")
        ack = await bybit_send(ws, "unsubscribe", "orderbook.1.BTCUSDT")
        await sim.push_quote("bybit", "BTC-USDT", *QUOTE)
        await assert_nothing_arrives(ws)
    assert ack["success"] is True and ack["op"] == "unsubscribe"


async def test_bybit_connection_without_traffic_is_cut_after_the_idle_limit() -> None:
    rules = {"bybit": VenueRules(idle_timeout_s=0.3)}
    async with (
        asyncio.timeout(10),
        ExchangeSimulator(("bybit",), autoplay=False, rules=rules) as sim,
        connect(sim.ws_url("bybit")) as idle,
        connect(sim.ws_url("bybit")) as pinging,
    ):
        for n in range(8):  # one JSON ping every 0.1 s keeps this one alive for 0.8 s
            assert (await bybit_send(pinging, "ping", req_id=str(n)))["ret_msg"] == "pong"
            await asyncio.sleep(0.1)
        closed = await assert_closed(idle, timeout=0.1)  # long since cut
        assert (await bybit_send(pinging, "ping"))["ret_msg"] == "pong"
    assert closed.rcvd is not None and closed.rcvd.code == 1000


# -- fault injection ----------------------------------------------------------------------------


async def test_drop_connections_aborts_every_socket_without_a_close_frame(sim: ExchangeSimulator) -> None:
    async with (
        asyncio.timeout(10),
        connect(sim.ws_url("binance") + "/stream") as first,
        connect(sim.ws_url("binance") + "/ws") as second,
    ):
        await binance_subscribe(first, "btcusdt@bookTicker")
        await binance_subscribe(second, "btcusdt@bookTicker")
        await sim.drop_connections("binance")
        for ws in (first, second):
            closed = await assert_closed(ws)
            assert isinstance(closed, ConnectionClosedError) and closed.rcvd is None
        async with connect(sim.ws_url("binance") + "/stream") as again:
            await binance_subscribe(again, "btcusdt@bookTicker")
    assert sim.connections_accepted("binance") == 3


async def test_silent_venue_keeps_sockets_open_and_sends_nothing(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("bybit")) as ws:
        await bybit_send(ws, "subscribe", "orderbook.1.BTCUSDT")
        sim.set_silent("bybit", True)
        await ws.send('{"req_id": "p", "op": "ping"}')
        await sim.push_quote("bybit", "BTC-USDT", *QUOTE)
        await assert_nothing_arrives(ws, window=0.5)  # also longer than the 0.2 s re-push period
        await ws.ping()  # the socket itself is still open
        sim.set_silent("bybit", False)
        await sim.push_quote("bybit", "BTC-USDT", "64000.50", "1", "64000.60", "1")
        frame = await recv_json(ws)
    assert frame["data"]["b"] == [["64000.50", "1"]]
    assert sim.subscribe_requests("bybit")[-1] == {"req_id": "p", "op": "ping"}


async def test_send_raw_delivers_text_and_binary_frames_as_is(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("binance") + "/stream") as ws:
        await binance_subscribe(ws, "btcusdt@bookTicker")
        await sim.send_raw("binance", '{"garbage": ')
        await sim.send_raw("binance", b"\x00\xff")
        assert await ws.recv() == '{"garbage": '
        assert await ws.recv() == b"\x00\xff"


async def test_slow_reader_is_dropped_while_others_keep_receiving() -> None:
    async with (
        asyncio.timeout(20),
        ExchangeSimulator(("binance",), autoplay=False, send_queue_frames=4) as sim,
        connect(sim.ws_url("binance") + "/stream", max_queue=1) as slow,
        connect(sim.ws_url("binance") + "/stream", max_size=None) as fast,
    ):
        await binance_subscribe(slow, "btcusdt@bookTicker")
        await binance_subscribe(fast, "btcusdt@bookTicker")
        big = "x" * 256 * 1024
        sent = 0
        while sim.slow_disconnects("binance") == 0:  # `slow` never reads; `fast` reads each frame
            await sim.send_raw("binance", big)
            assert await fast.recv() == big
            sent += 1
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        quote = await recv_json(fast)
        closed = await assert_closed(slow)
    assert sim.slow_disconnects("binance") == 1
    assert sent > 4 and quote["data"]["b"] == QUOTE[0]
    assert isinstance(closed, ConnectionClosedError)


async def test_unknown_path_is_refused_with_http_404(sim: ExchangeSimulator) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with asyncio.timeout(5), connect(sim.ws_url("binance") + "/api/v3/ping"):
            pass
    assert info.value.response.status_code == 404


# -- simulator API ------------------------------------------------------------------------------


async def test_wait_subscribed_times_out_with_a_simulator_error(sim: ExchangeSimulator) -> None:
    with pytest.raises(SubscriptionTimeout):
        await sim.wait_subscribed("binance", "BTC-USDT", timeout=0.05)
    with pytest.raises(SimulatorError):
        await sim.wait_subscribed("binance", "DOGE-USDT", timeout=0.05)


async def test_wait_subscribed_counts_across_connections(sim: ExchangeSimulator) -> None:
    async with (
        asyncio.timeout(10),
        connect(sim.ws_url("binance") + "/stream?streams=btcusdt@bookTicker"),
        connect(sim.ws_url("binance") + "/stream") as second,
    ):
        await binance_subscribe(second, "btcusdt@bookTicker", "ethusdt@bookTicker")
        await sim.wait_subscribed("binance", "BTC-USDT", count=2)
        with pytest.raises(SubscriptionTimeout):
            await sim.wait_subscribed("binance", "BTC-USDT", count=3, timeout=0.05)


@pytest.mark.parametrize(
    ("venue", "symbol", "bid"),
    [("okx", "BTC-USDT", "1"), ("binance", "DOGE-USDT", "1"), ("binance", "BTC-USDT", "abc"),
     ("binance", "BTC-USDT", "-1"), ("binance", "BTC-USDT", "NaN"), ("binance", "BTC-USDT", 1.5)],
)  # fmt: skip
async def test_push_quote_refuses_bad_input(
    sim: ExchangeSimulator, venue: str, symbol: str, bid: Any
) -> None:
    with pytest.raises(SimulatorError):
        await sim.push_quote(venue, symbol, bid, "1", "2", "1")


def test_constructor_refuses_unknown_venues_and_malformed_symbols() -> None:
    with pytest.raises(SimulatorError):
        ExchangeSimulator(("binance", "ftx"))
    with pytest.raises(SimulatorError):
        ExchangeSimulator(symbols=("btcusdt",))
    with pytest.raises(SimulatorError):
        ExchangeSimulator(("binance",), ports={"bybit": 0})
    with pytest.raises(SimulatorError):
        ExchangeSimulator(dislocation_probability=2.0)
    for levels in (0, 401):
        with pytest.raises(SimulatorError):
            ExchangeSimulator(book_levels=levels)
    assert set(SIM_VENUES) == set(VENUE_IDS)


async def test_close_is_idempotent_and_leaves_no_task_or_listener() -> None:
    async with asyncio.timeout(10):
        sim = ExchangeSimulator(seed=3, tick_interval_s=0.01)
        await sim.start()
        url = sim.ws_url("bybit")
        async with connect(url) as ws:
            await bybit_send(ws, "subscribe", "orderbook.1.BTCUSDT")
            await recv_json(ws)  # autoplay data flows
            await sim.close()
            await assert_closed(ws)
        await sim.close()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        with pytest.raises(OSError):
            async with connect(url, open_timeout=2):
                pass


async def test_run_until_cancelled_serves_then_closes_on_cancel() -> None:
    sim = ExchangeSimulator(("binance",), autoplay=False)
    async with asyncio.timeout(10):
        task = asyncio.create_task(sim.run_until_cancelled())
        while sim.connections_accepted("binance") == 0:
            try:
                async with connect(sim.ws_url("binance") + "/ws"):
                    pass
            except SimulatorError:
                await asyncio.sleep(0.01)  # not listening yet
        url = sim.ws_url("binance")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(OSError):
            async with connect(url + "/ws", open_timeout=2):
                pass


# -- price model --------------------------------------------------------------------------------


def test_model_with_the_same_seed_produces_the_same_quotes() -> None:
    one, two, other = (MarketModel(("binance", "bybit"), ("BTC-USDT", "ETH-USDT"), seed=s) for s in (7, 7, 8))
    runs = [[model.step() for _ in range(300)] for model in (one, two, other)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


async def test_simulators_with_the_same_seed_publish_the_same_quotes() -> None:
    async def collect(sim: ExchangeSimulator) -> dict[int, Any]:
        async with connect(sim.ws_url("binance") + "/ws") as ws:
            await binance_subscribe(ws, "btcusdt@bookTicker")
            frames: dict[int, Any] = {}
            while len(frames) < 15:
                data = await recv_json(ws)
                frames[data["u"]] = data
            return frames

    async with (
        asyncio.timeout(10),
        ExchangeSimulator(seed=11, tick_interval_s=0.01) as first,
        ExchangeSimulator(seed=11, tick_interval_s=0.01) as second,
    ):
        one, two = await asyncio.gather(collect(first), collect(second))
    common = set(one) & set(two)
    assert len(common) >= 5  # both ran from the same start; joined at slightly different ticks
    assert all(one[u] == two[u] for u in common)


async def test_advance_publishes_model_steps_deterministically() -> None:
    async def run(seed: int) -> list[Any]:
        async with (
            ExchangeSimulator(("bybit",), ("SOL-USDT",), autoplay=False, seed=seed) as sim,
            connect(sim.ws_url("bybit")) as ws,
        ):
            await bybit_send(ws, "subscribe", "orderbook.1.SOLUSDT")
            await sim.advance(50)
            await sim.push_quote("bybit", "SOL-USDT", "1.00", "1", "1.01", "1")  # end marker
            frames = []
            while (data := (await recv_json(ws))["data"])["b"] != [["1.00", "1"]]:
                frames.append(data)
            return frames

    async with asyncio.timeout(10):
        first, second, other = await run(5), await run(5), await run(6)
    assert len(first) >= 10
    assert first == second
    assert first != other


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_default_model_opens_a_cross_venue_spread_above_both_fees_and_threshold(seed: int) -> None:
    model = MarketModel(("binance", "bybit"), ("BTC-USDT", "ETH-USDT"), seed=seed)
    ticks_per_minute = 1200  # default 50 ms tick
    episodes, above = 0, False
    for _ in range(3 * ticks_per_minute):
        model.step()
        quotes = model.quotes()
        wide = any(cross_venue_spread_bps(quotes, s) > 25 for s in model.symbols)
        episodes += wide and not above
        above = wide
    assert episodes >= 2 * 3  # "several times a minute"


def test_model_quotes_are_quantized_realistic_and_uncrossed() -> None:
    symbols = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT")
    model = MarketModel(("binance", "bybit"), symbols, seed=4)
    for _ in range(500):
        model.step()
    for (_, symbol), top in model.quotes().items():
        spec = spec_for(symbol)
        assert top.bid < top.ask
        assert top.bid.as_tuple().exponent == spec.tick.as_tuple().exponent == top.ask.as_tuple().exponent
        assert top.bid_qty.as_tuple().exponent == spec.step.as_tuple().exponent
        assert spec.step <= top.bid_qty <= Decimal(spec.max_qty) + spec.step and top.ask_qty >= spec.step
        assert abs(float(top.bid) / spec.start_price - 1) < 0.05
        assert "E" not in format(top.bid, "f") and "E" not in str(top.ask_qty)
