"""The simulator's depth: the book model, Binance and Bybit depth streams, REST snapshots and fault switches.

A plain WebSocket client applying what the simulator sends, by each venue's
documented procedure, must end with exactly the book the simulator holds.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect

from connectors.sim import ExchangeSimulator, SimulatorError
from connectors.sim.depth import SymbolDepth, top_levels, view_changes
from connectors.sim.market import MarketModel, spec_for
from connectors.types import Level

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve()
FRAMES = HERE.parents[1] / "connectors" / "frames"  # the project's copies of the documented samples
SHARED_SAMPLES = HERE.parents[3] / "shared" / "exchange-samples"  # the originals (../shared)
QUOTE = ("64000.10", "0.50000", "64000.20", "1.25000")
NOW_NS = 1_770_123_456_789_000_000


def documented(name: str) -> Any:
    """Load a documented sample: the copy under tests/connectors/frames, else the shared original."""
    copies = (FRAMES / name.split("-", maxsplit=1)[0] / name, *sorted(FRAMES.glob(f"*/{name}")))
    for path in (*copies, SHARED_SAMPLES / name):
        if path.exists():
            text = path.read_text()
            if name.endswith(".jsonl"):
                return [json.loads(line) for line in text.splitlines() if line.strip()]
            return json.loads(text)
    raise FileNotFoundError(f"documented sample {name} is in neither {FRAMES} nor {SHARED_SAMPLES}")


def shape(value: Any) -> Any:
    """Return a JSON value's shape: key order and value types, recursively (first item of a list)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


async def recv_json(ws: ClientConnection, timeout: float = 2.0) -> Any:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        return orjson.loads(await ws.recv())


async def assert_nothing_arrives(ws: ClientConnection, window: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(window):
            await ws.recv()


async def http_get(url: str) -> tuple[int, Any]:
    """GET `url` with a plain HTTP client; return (status, body parsed as JSON, or its text)."""

    def get() -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        try:
            return status, json.loads(body)
        except json.JSONDecodeError:
            return status, body.decode()

    return await asyncio.to_thread(get)


class LocalBook:
    """What a client keeps: price → quantity per side, quantity 0 deletes."""

    def __init__(self, bids: Iterable[Sequence[Any]] = (), asks: Iterable[Sequence[Any]] = ()) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        for side, levels in (("bid", bids), ("ask", asks)):
            for price, qty, *_ in levels:  # OKX levels carry two more fields
                self.apply(side, price, qty)

    def apply(self, side: str, price: Any, qty: Any) -> None:
        levels = self.bids if side == "bid" else self.asks
        price, qty = Decimal(str(price)), Decimal(str(qty))
        if qty == 0:
            levels.pop(price, None)
        else:
            levels[price] = qty

    def truncate(self, depth: int) -> None:
        self.bids = dict(top_levels(self.bids, "bid", depth))
        self.asks = dict(top_levels(self.asks, "ask", depth))

    def top(self, depth: int | None = None) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        return top_levels(self.bids, "bid", depth), top_levels(self.asks, "ask", depth)


def same_book(
    left: tuple[Sequence[Level], Sequence[Level]], right: tuple[Sequence[Level], Sequence[Level]]
) -> bool:
    """Compare books by value (`64000.10` equals `64000.1`)."""
    return [list(side) for side in left] == [list(side) for side in right]


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    async with asyncio.timeout(10):
        simulator = ExchangeSimulator(
            ("binance", "bybit"), ("BTC-USDT", "ETH-USDT"), autoplay=False, seed=2, book_levels=60
        )
        await simulator.start()
    try:
        yield simulator
    finally:
        async with asyncio.timeout(10):
            await simulator.close()


async def binance_depth(sim: ExchangeSimulator, path: str = "/stream") -> ClientConnection:
    ws = await connect(sim.ws_url("binance") + path)
    await ws.send('{"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 1}')
    assert await recv_json(ws) == {"result": None, "id": 1}
    return ws


async def next_depth_update(ws: ClientConnection) -> Any:
    while "data" not in (frame := await recv_json(ws)) or frame["data"].get("e") != "depthUpdate":
        pass
    return frame["data"]


async def bybit_topic(sim: ExchangeSimulator, topic: str) -> tuple[ClientConnection, Any]:
    ws = await connect(sim.ws_url("bybit"))
    await ws.send(orjson.dumps({"req_id": "d", "op": "subscribe", "args": [topic]}).decode())
    assert (await recv_json(ws))["success"] is True
    return ws, await recv_json(ws)


# -- the book model -----------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["BTC-USDT", "SOL-USDT", "DOGE-USDT"])
def test_depth_tops_with_the_served_quote_and_keeps_n_sorted_quantized_levels(symbol: str) -> None:
    spec = spec_for(symbol)
    model = MarketModel(("binance",), (symbol,), seed=5)
    depth = SymbolDepth(symbol, spec, levels=40, rng=random.Random(5))
    for tick in range(400):
        top = model.quote("binance", symbol)
        depth.update(top, evolve=tick > 0, now_ms=tick)
        book = depth.snapshot()
        assert book.bids[0] == (top.bid, top.bid_qty) and book.asks[0] == (top.ask, top.ask_qty)
        assert len(book.asks) == 40 and 38 <= len(book.bids) <= 40  # an inner level may have moved out
        assert all(a[0] > b[0] for a, b in zip(book.bids, book.bids[1:], strict=False))
        assert all(a[0] < b[0] for a, b in zip(book.asks, book.asks[1:], strict=False))
        assert book.bids[0][0] < book.asks[0][0]
        for price, qty in book.bids + book.asks:
            assert price % spec.tick == 0 and qty % spec.step == 0 and qty > 0
        model.step()


def test_depth_events_chain_their_ids_and_replay_to_the_book() -> None:
    model = MarketModel(("okx",), ("ETH-USDT",), seed=9)
    depth = SymbolDepth("ETH-USDT", spec_for("ETH-USDT"), levels=25, rng=random.Random(9), view_depths=(10,))
    client = LocalBook()
    last_id, view_id, changed_views = depth.last_id, 0, 0
    for tick in range(300):
        event = depth.update(model.quote("okx", "ETH-USDT"), evolve=True, now_ms=tick)
        model.step()
        if event is None:
            continue
        assert event.first_id == last_id + 1 == event.before.last_id + 1
        assert event.after.last_id - event.first_id + 1 == len(event.changes)
        for side, price, qty in event.changes:
            client.apply(side, price, qty)
        assert same_book(client.top(), (event.after.bids, event.after.asks))
        changed = (event.before.bids[:10], event.before.asks[:10]) != (
            event.after.bids[:10],
            event.after.asks[:10],
        )
        changed_views += changed
        assert event.after.view_id(10) == view_id + changed
        last_id, view_id = event.after.last_id, event.after.view_id(10)
    assert changed_views > 200  # the top 10 moves nearly every tick


_prices = st.dictionaries(st.integers(1, 40).map(Decimal), st.integers(1, 5).map(Decimal), max_size=25)


@given(before=_prices, after=_prices, side=st.sampled_from(["bid", "ask"]), depth=st.integers(1, 12))
@settings(max_examples=300, deadline=None)
def test_view_changes_turn_the_old_view_into_the_new_one(
    before: dict[Decimal, Decimal], after: dict[Decimal, Decimal], side: Any, depth: int
) -> None:
    old, new = top_levels(before, side, depth), top_levels(after, side, depth)
    for truncated_to in (None, depth):
        client = dict(old)
        for _, price, qty in view_changes(old, new, side, truncated_to=truncated_to):
            if qty == 0:
                client.pop(price, None)
            else:
                client[price] = qty
        assert top_levels(client, side, truncated_to) == new  # a Kraken client truncates


def test_nudge_changes_an_inner_level_and_never_the_top() -> None:
    depth = SymbolDepth("BTC-USDT", spec_for("BTC-USDT"), levels=5, rng=random.Random(1))
    with pytest.raises(SimulatorError):
        depth.nudge(0)  # no book yet
    model = MarketModel(("binance",), ("BTC-USDT",), seed=1)
    depth.update(model.quote("binance", "BTC-USDT"), evolve=False, now_ms=0)
    event = depth.nudge(1)
    ((side, price, qty),) = event.changes
    assert side == "bid" and price in dict(event.before.bids[1:]) and qty != dict(event.before.bids)[price]
    assert event.after.bids[0] == event.before.bids[0] and event.after.asks == event.before.asks


# -- Binance ------------------------------------------------------------------------------------


async def test_binance_diffs_after_the_rest_snapshot_rebuild_the_venue_book(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10):
        ws = await binance_depth(sim)
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        await sim.advance(5)
        status, snapshot = await http_get(sim.rest_url("binance") + "/api/v3/depth?symbol=BTCUSDT&limit=1000")
        await sim.advance(20)
        _, final = await http_get(sim.rest_url("binance") + "/api/v3/depth?symbol=BTCUSDT&limit=1000")
        events = [await next_depth_update(ws)]
        while events[-1]["u"] < final["lastUpdateId"]:
            events.append(await next_depth_update(ws))
        await ws.close()
    assert status == 200 and len(snapshot["bids"]) == len(snapshot["asks"]) == 60
    # The documented procedure: drop what the snapshot covers, the first event kept straddles it.
    kept = [e for e in events if e["u"] > snapshot["lastUpdateId"]]
    assert kept[0]["U"] <= snapshot["lastUpdateId"] + 1 <= kept[0]["u"]
    book, last = LocalBook(snapshot["bids"], snapshot["asks"]), snapshot["lastUpdateId"]
    for event in kept:
        assert event["U"] == last + 1
        for price, qty in event["b"]:
            book.apply("bid", price, qty)
        for price, qty in event["a"]:
            book.apply("ask", price, qty)
        last = event["u"]
    assert same_book(book.top(), sim.depth("binance", "BTC-USDT"))
    assert same_book(book.top(), LocalBook(final["bids"], final["asks"]).top())
    assert book.top()[0][0] != (Decimal(QUOTE[0]), Decimal(QUOTE[1]))  # the model moved it on


async def test_binance_depth_update_has_the_documented_shape_raw_and_combined(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("binance") + "/ws/btcusdt@depth@100ms") as raw:
        await sim.wait_subscribed("binance", "BTC-USDT")  # a URL depth stream is a subscription too
        combined = await binance_depth(sim)
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        bare, wrapped = await recv_json(raw), await recv_json(combined)
        await sim.push_quote("binance", "BTC-USDT", "64000.00", "0.10000", "64000.20", "1.25000")
        second = await recv_json(raw)
        await combined.close()
    assert shape(bare) == shape(documented("binance-depthUpdate.json"))
    assert wrapped == {"stream": "btcusdt@depth@100ms", "data": bare}
    assert (bare["e"], bare["s"]) == ("depthUpdate", "BTCUSDT")
    assert bare["u"] - bare["U"] + 1 == len(bare["b"]) + len(bare["a"]) == 120  # the whole new book
    assert ["64000.10", "0.50000"] in bare["b"] and ["64000.20", "1.25000"] in bare["a"]
    assert second["U"] == bare["u"] + 1
    assert ["64000.00", "0.10000"] in second["b"] and ["64000.10", "0"] in second["b"]  # the old top left


async def test_binance_rest_depth_answers_the_documented_shape_and_errors(sim: ExchangeSimulator) -> None:
    await sim.push_quote("binance", "ETH-USDT", "3200.01", "1.5", "3200.02", "2.5")
    base = sim.rest_url("binance")
    async with asyncio.timeout(10):
        ok = await http_get(base + "/api/v3/depth?symbol=ETHUSDT&limit=5")
        default = await http_get(base + "/api/v3/depth?symbol=ETHUSDT")
        missing = await http_get(base + "/api/v3/depth")
        unknown = await http_get(base + "/api/v3/depth?symbol=DOGEUSDT")
        bad_limit = await http_get(base + "/api/v3/depth?symbol=ETHUSDT&limit=ten")
        ping, server_time = await http_get(base + "/api/v3/ping"), await http_get(base + "/api/v3/time")
        nowhere = await http_get(base + "/api/v3/klines")
    status, body = ok
    assert status == 200 and shape(body) == shape(documented("binance-depth-rest-snapshot.json"))
    assert body["bids"][0] == ["3200.01", "1.5"] and body["asks"][0] == ["3200.02", "2.5"]
    assert len(body["bids"]) == len(body["asks"]) == 5 and len(default[1]["bids"]) == 60
    assert body["lastUpdateId"] == default[1]["lastUpdateId"]
    assert missing[0] == unknown[0] == bad_limit[0] == 400
    assert (missing[1]["code"], unknown[1], bad_limit[1]["code"]) == (
        -1102,
        {"code": -1121, "msg": "Invalid symbol."},
        -1100,
    )
    assert ping == (200, {}) and server_time[0] == 200 and isinstance(server_time[1]["serverTime"], int)
    assert nowhere == (404, "Not Found\n")


# -- Bybit --------------------------------------------------------------------------------------


async def test_bybit_orderbook_50_snapshot_then_deltas_with_u_plus_one_rebuild_the_top_50(
    sim: ExchangeSimulator,
) -> None:
    await sim.push_quote("bybit", "BTC-USDT", *QUOTE)
    async with asyncio.timeout(10):
        ws, snapshot = await bybit_topic(sim, "orderbook.50.BTCUSDT")
        await sim.advance(30)
        await sim.flush("bybit")
        deltas = []
        while True:
            try:
                deltas.append(await recv_json(ws, timeout=0.3))
            except TimeoutError:
                break
        await ws.close()
    assert shape(snapshot) == shape(documented("bybit-orderbook-snapshot.json"))
    assert snapshot["topic"] == "orderbook.50.BTCUSDT" and snapshot["type"] == "snapshot"
    assert len(snapshot["data"]["b"]) == len(snapshot["data"]["a"]) == 50  # the top 50 of 60 levels
    book, last = LocalBook(snapshot["data"]["b"], snapshot["data"]["a"]), snapshot["data"]["u"]
    assert len(deltas) >= 20
    for delta in deltas:
        assert shape(delta) == shape(documented("bybit-orderbook-delta.json"))
        assert delta["type"] == "delta" and delta["data"]["u"] == last + 1
        assert delta["data"]["seq"] > snapshot["data"]["seq"]
        for price, qty in delta["data"]["b"]:
            book.apply("bid", price, qty)
        for price, qty in delta["data"]["a"]:
            book.apply("ask", price, qty)
        last = delta["data"]["u"]
    bids, asks = sim.depth("bybit", "BTC-USDT")
    assert same_book(book.top(), (bids[:50], asks[:50]))  # levels leaving the view were deleted


# -- faults -------------------------------------------------------------------------------------


async def test_gap_skips_binance_update_ids_and_the_rest_snapshot_has_the_lost_change(
    sim: ExchangeSimulator,
) -> None:
    async with asyncio.timeout(10):
        ws = await binance_depth(sim, "/ws")
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        before = await recv_json(ws)
        await sim.inject_gap("binance", "BTC-USDT")
        _, snapshot = await http_get(sim.rest_url("binance") + "/api/v3/depth?symbol=BTCUSDT")
        await sim.push_quote("binance", "BTC-USDT", "64000.00", "0.10000", "64000.20", "1.25000")
        after = await recv_json(ws)
        await ws.close()
    assert after["U"] > before["u"] + 1  # the lost message's id was consumed: a gap
    assert before["u"] < snapshot["lastUpdateId"] < after["U"]
    assert LocalBook(snapshot["bids"]).top()[0] != LocalBook(before["b"]).top()[0]  # an inner level moved
    assert sim.faults_injected("binance") == sim.faults_injected("binance", "gap") == 1


async def test_gap_makes_bybit_u_jump(sim: ExchangeSimulator) -> None:
    await sim.push_quote("bybit", "BTC-USDT", *QUOTE)
    async with asyncio.timeout(10):
        ws, snapshot = await bybit_topic(sim, "orderbook.50.BTCUSDT")
        await sim.inject_gap("bybit", "BTC-USDT")
        await sim.push_quote("bybit", "BTC-USDT", "64000.00", "0.10000", "64000.20", "1.25000")
        delta = await recv_json(ws)
        await ws.close()
    assert delta["data"]["u"] == snapshot["data"]["u"] + 2


async def test_duplicate_sends_the_next_depth_message_twice(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10):
        ws = await binance_depth(sim)
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        await recv_json(ws)
        await sim.inject_duplicate("binance", "BTC-USDT")
        await sim.push_quote("binance", "BTC-USDT", "64000.00", "0.10000", "64000.20", "1.25000")
        first, again = await recv_json(ws), await recv_json(ws)
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        following = await recv_json(ws)
        await ws.close()
    assert first == again
    assert following["data"]["U"] == first["data"]["u"] + 1  # only that one message was repeated
    assert sim.faults_injected("binance", "duplicate") == 1


async def test_crossed_top_reaches_bbo_and_depth_and_the_next_quote_heals_it(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("binance") + "/ws") as ws:
        await ws.send('{"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker", "btcusdt@depth"], "id": 1}')
        await recv_json(ws)
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        await recv_json(ws), await recv_json(ws)
        await sim.inject_crossed("binance", "BTC-USDT")
        ticker, depth = await recv_json(ws), await recv_json(ws)
        crossed_bids, crossed_asks = sim.depth("binance", "BTC-USDT")
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        healed_bids, healed_asks = sim.depth("binance", "BTC-USDT")
    assert Decimal(ticker["b"]) == Decimal("64000.21") and Decimal(ticker["a"]) == Decimal("64000.20")
    assert ["64000.21", "0.50000"] in depth["b"]
    assert crossed_bids[0][0] > crossed_asks[0][0]
    assert healed_bids[0][0] < healed_asks[0][0]
    assert sim.faults_injected("binance", "crossed") == 1


async def test_stall_holds_back_data_but_answers_control_and_resumes_without_a_gap() -> None:
    async with (
        asyncio.timeout(10),
        ExchangeSimulator(("binance",), ("BTC-USDT",), seed=4, tick_interval_s=0.01) as sim,
        connect(sim.ws_url("binance") + "/ws") as ws,
    ):
        await ws.send('{"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 1}')
        await recv_json(ws)
        last = await recv_json(ws)  # data flows
        sim.stall("binance", 60)
        with pytest.raises(TimeoutError):  # read what was sent before the stall
            async with asyncio.timeout(0.2):
                while True:
                    last = orjson.loads(await ws.recv())
        await ws.send('{"method": "LIST_SUBSCRIPTIONS", "id": 2}')
        listing = await recv_json(ws)
        await assert_nothing_arrives(ws, window=0.2)  # autoplay keeps ticking, nothing is sent
        sim.resume("binance")
        resumed = await recv_json(ws)
    assert listing == {"result": ["btcusdt@depth@100ms"], "id": 2}
    assert last is not None and resumed["U"] == last["u"] + 1  # the market stood still: nothing lost
    assert sim.faults_injected("binance", "stall") == 1


async def test_quote_pushed_during_a_stall_is_lost_and_shows_as_a_gap(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10):
        ws = await binance_depth(sim, "/ws")
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        before = await recv_json(ws)
        sim.stall("binance", 60)
        await sim.push_quote("binance", "BTC-USDT", "64000.00", "0.10000", "64000.20", "1.25000")
        await assert_nothing_arrives(ws)
        sim.resume("binance")
        await sim.push_quote("binance", "BTC-USDT", *QUOTE)
        after = await recv_json(ws)
        await ws.close()
    assert after["U"] > before["u"] + 1


async def test_fault_switches_refuse_what_cannot_be_done(sim: ExchangeSimulator) -> None:
    with pytest.raises(SimulatorError):
        await sim.inject_gap("binance", "BTC-USDT")  # no book yet: nothing to lose
    with pytest.raises(SimulatorError):
        await sim.inject_crossed("binance", "BTC-USDT")  # no quote yet to cross
    await sim.push_quote("binance", "BTC-USDT", *QUOTE)
    with pytest.raises(SimulatorError):
        await sim.inject_bad_checksum("binance", "BTC-USDT")  # Binance has no checksum
    with pytest.raises(SimulatorError):
        await sim.inject_duplicate("binance", "DOGE-USDT")
    with pytest.raises(SimulatorError):
        await sim.inject_gap("okx", "BTC-USDT")  # not simulated here
    with pytest.raises(SimulatorError):
        sim.stall("bybit", 0)
    with pytest.raises(SimulatorError):
        sim.rest_url("bybit")  # Bybit's book comes over the socket only
    with pytest.raises(SimulatorError):
        sim.faults_injected("binance", "meteor")  # type: ignore[arg-type]
    assert sim.faults_injected("binance") == sim.faults_injected("bybit") == 0
