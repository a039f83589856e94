"""Leg risk: an arbitrage whose legs fill unequally leaves a residual that is worked until flat, or halts.

Paper executor over the cached books (`test_smart_router.World`), a fake clock, no Kafka.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import orjson
from contract import assert_valid, is_valid
from prometheus_client import REGISTRY
from test_smart_router import MS, CountingExecutor, World

from connectors.registry import client_order_id
from connectors.types import Quote
from router.errors import ExecutionError
from router.execution import Fill, LegOutcome, OrderLeg
from router.ledger import LegIntent
from router.residuals import ResidualSettings

SETTINGS = ResidualSettings("unwind", max_slippage_bps=D(20), step_bps=D(10), timeout_ms=5_000)


class FlakyExecutor(CountingExecutor):
    """The paper executor, except that bybit refuses the arbitrage's sell leg (e.g. no balance) and a
    venue in `down` answers every leg with an error."""

    refused_legs: frozenset[int] = frozenset({1})
    down: frozenset[str] = frozenset()
    sell_depth: D | None = None  # bybit's bid shrinks to this between planning and the sell leg

    async def execute(self, leg: OrderLeg) -> LegOutcome:
        if leg.leg == 1 and self.sell_depth is not None:
            self.cache.update(Quote("bybit", "BTC-USDT", D(101), self.sell_depth, D(102), D(5), None, 0, 2))
        if leg.leg in self.refused_legs:
            self.sent.append(leg)
            return LegOutcome(leg, (), "bybit refused the order: insufficient balance", "venue_error")
        if leg.venue in self.down:
            self.sent.append(leg)
            return LegOutcome(leg, (), f"{leg.venue} answered 503")
        return await super().execute(leg)


def arbitrage(request_id: str = "arb-1", quantity: str = "1") -> bytes:
    message = {"v": 1, "request_id": request_id, "user_id": "u1", "kind": "arbitrage", "symbol": "BTC-USDT"}
    return orjson.dumps(message | {"quantity": quantity, "buy_venue": "binance", "sell_venue": "bybit"})


def world(tmp_path: Path, policy: str = "unwind") -> World:
    settings = replace(SETTINGS, policy=policy)  # type: ignore[arg-type]
    w = World(tmp_path / "state", executor=FlakyExecutor, residuals=settings)
    w.book("binance", [("99.9", "0.3"), ("99.85", "0.2"), ("99.7", "5")], [("100", "2")])
    w.book("bybit", [("101", "2")], [("102", "5")])
    w.book("okx", [("99.6", "5")], [("99.8", "5")])
    return w


def executor(w: World) -> FlakyExecutor:
    assert isinstance(w.executor, FlakyExecutor)
    return w.executor


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_rejected_sell_leg_leaves_a_residual_worked_step_by_step_until_flat(tmp_path: Path) -> None:
    w = world(tmp_path)
    result = orjson.loads((await w.router.handle(arbitrage())).result or b"")
    # Bought 1 on binance, sold nothing: nothing hedged, so the arbitrage failed, and the first attempt
    # sold 0.3 at binance's bid 99.9 (0 bps widening).
    assert (result["status"], result["filled_quantity"]) == ("failed", "0")
    assert_valid("execution-result", result)
    assert not is_valid("execution-result", result | {"residual": result["residual"] | {"state": "pending"}})
    residual = result["residual"]
    assert (residual["quantity"], residual["venue"], residual["exposure"]) == ("1", "binance", "long")
    assert (residual["state"], residual["action"], residual["attempts"]) == (
        "working",
        "partially_unwound",
        1,
    )
    assert (residual["unwound_quantity"], residual["remaining_quantity"]) == ("0.3", "0.7")
    assert ("binance", "sell", "99.9", "0.3") in {
        (f["venue"], f["side"], f["price"], f["quantity"]) for f in result["fills"]
    }
    # Then 10 bps: limit 99.8001 takes 99.9 × 0.3 + 99.85 × 0.2, leaving 0.2; binance goes down, so
    # 20 bps (99.7002) fills nothing; then okx, the best other venue, at 20 bps: limit 99.4008.
    await w.router.residuals.step("arb-1")
    executor(w).down = frozenset({"binance"})
    w.book("bybit", [("99.5", "5")], [("102", "5")])  # the spread closed: okx's 99.6 less 8 bps is best
    for _ in range(2):
        await w.router.residuals.step("arb-1")
    sent = [(leg.leg, leg.venue, leg.side, leg.quantity) for leg in w.executor.sent]
    assert sent == [
        (0, "binance", "buy", D(1)),
        (1, "bybit", "sell", D(1)),
        (2, "binance", "sell", D(1)),
        (3, "binance", "sell", D("0.7")),
        (4, "binance", "sell", D("0.2")),
        (5, "okx", "sell", D("0.2")),
    ]
    assert [leg.limit_price for leg in w.executor.sent[2:]] == [
        D("99.9"),
        D("99.8001"),
        D("99.7002"),
        D("99.4008"),
    ]
    assert [leg.client_order_id for leg in w.executor.sent[2:]] == [
        client_order_id(venue, "arb-1", n)
        for n, venue in ((2, "binance"), (3, "binance"), (4, "binance"), (5, "okx"))
    ]
    record = w.ledger.residual("arb-1")
    assert record is not None and (record.state, record.remaining, record.attempts) == ("flat", D(0), 4)
    # Flat: no further attempt, whatever the books do.
    await w.router.residuals.step("arb-1")
    assert len(w.executor.sent) == 6 and not w.kill_switch.halted
    w.ledger.close()


async def test_a_residual_flattened_at_once_is_reported_flat_and_the_result_partially_filled(
    tmp_path: Path,
) -> None:
    w = world(tmp_path)
    executor(w).refused_legs = frozenset()
    executor(w).sell_depth = D("0.4")  # bybit takes what its book holds by then: 0.4 of the 1
    result = orjson.loads((await w.router.handle(arbitrage())).result or b"")
    assert (result["status"], result["filled_quantity"]) == ("partially_filled", "0.4")
    residual = result["residual"]
    assert (residual["quantity"], residual["state"], residual["action"]) == (
        "0.6",
        "working",
        "partially_unwound",
    )
    await w.router.residuals.step("arb-1")  # 10 bps: takes 0.5 of what binance bids, more than 0.3
    record = w.ledger.residual("arb-1")
    assert record is not None and (record.state, record.attempts) == ("flat", 2)
    w.ledger.close()


async def test_a_residual_that_cannot_be_flattened_halts_trading_with_the_reason(tmp_path: Path) -> None:
    w = world(tmp_path)
    halts = metric("smartroute_residual_halts_total")
    await w.router.handle(arbitrage())  # 0.3 unwound, 0.7 left
    executor(w).down = frozenset({"binance", "bybit", "okx"})
    for _ in range(4):
        await w.router.residuals.step("arb-1")
    assert not w.kill_switch.halted
    w.clock.now_ns += 5_000 * MS  # residual_timeout_ms after it began
    record = await w.router.residuals.step("arb-1")
    assert record is not None and (record.state, record.remaining) == ("abandoned", D("0.7"))
    assert w.kill_switch.halted and w.kill_switch.issued_by == "smartroute"
    assert w.kill_switch.reason == (
        "residual of arbitrage arb-1: 0.7 BTC-USDT still long on binance after 5000 ms and 5 attempt(s); "
        "flatten it by hand, then resume"
    )
    assert metric("smartroute_residual_halts_total") == halts + 1
    assert metric("smartroute_residual_open") == 0
    sent = len(w.executor.sent)
    await w.router.residuals.step("arb-1")  # abandoned: never worked again
    halted = orjson.loads((await w.router.handle(arbitrage("arb-2"))).result or b"")
    assert halted["reject_code"] == "halted" and len(w.executor.sent) == sent
    w.ledger.close()


async def test_report_policy_records_the_residual_as_left_and_never_trades_or_halts(tmp_path: Path) -> None:
    w = world(tmp_path, policy="report")
    result = orjson.loads((await w.router.handle(arbitrage())).result or b"")
    residual = result["residual"]
    assert (residual["state"], residual["action"], residual["remaining_quantity"]) == ("left", "left", "1")
    assert_valid("execution-result", result)
    w.clock.now_ns += 60_000 * MS
    await w.router.residuals.step("arb-1")
    record = w.ledger.residual("arb-1")
    assert record is not None and record.state == "left"
    assert [leg.leg for leg in w.executor.sent] == [0, 1] and not w.kill_switch.halted
    w.ledger.close()


async def test_the_background_worker_resumes_an_open_residual_after_a_restart(tmp_path: Path) -> None:
    w = world(tmp_path)
    await w.router.handle(arbitrage())
    w.ledger.close()
    restarted = world(tmp_path)
    restarted.book("binance", [("99.9", "5")], [("100", "2")])
    stop = asyncio.Event()
    task = asyncio.create_task(restarted.router.work_residuals(stop))
    for _ in range(100):
        record = restarted.ledger.residual("arb-1")
        if record is not None and record.state == "flat":
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert record is not None and (record.state, record.attempts) == ("flat", 2)
    assert [(leg.leg, leg.quantity) for leg in restarted.executor.sent] == [(3, D("0.7"))]
    restarted.ledger.close()


async def test_a_crash_with_one_leg_filled_and_the_other_in_flight_is_never_reported_filled(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    first = world(tmp_path)
    raw = arbitrage("arb-crash")
    # The previous process claimed the arbitrage, recorded both legs, the buy leg filled, then it died
    # with the sell leg sent and not settled.
    first.ledger.claim("arb-crash", "u1", raw, now_ns=1)
    for leg, venue, side in ((0, "binance", "buy"), (1, "bybit", "sell")):
        coid = client_order_id(venue, "arb-crash", leg)
        first.ledger.record_leg_intent(
            LegIntent("arb-crash", leg, venue, coid, side, D(1), D(100), "intent", None)
        )
        first.ledger.mark_leg("arb-crash", leg, "sent")
    buy_coid = client_order_id("binance", "arb-crash", 0)
    fill = Fill("binance", "buy", D(100), D(1), D("0.1"), "USDT", buy_coid, "paper-1", 1)
    settled = LegOutcome(OrderLeg("arb-crash", 0, "binance", "BTC-USDT", "buy", D(1), D(100)), (fill,))
    first.ledger.mark_leg("arb-crash", 0, "settled", settled.encode())
    first.ledger.close()

    restarted = world(tmp_path)
    restarted.book("binance", [("99.9", "5")], [("100", "2")])
    [stored] = await restarted.router.recover()
    result = orjson.loads(stored)
    assert (result["status"], result["filled_quantity"]) == ("failed", "0")
    assert_valid("execution-result", result)
    assert result["residual"]["quantity"] == "1" and result["residual"]["state"] == "flat"
    assert "settled after an interruption" in result["message"]
    # Leg 1 was reconciled, never sent again; only the residual's leg 2 was sent.
    assert [leg.leg for leg in restarted.executor.recovered] == [1]
    assert [(leg.leg, leg.venue, leg.side) for leg in restarted.executor.sent] == [(2, "binance", "sell")]
    assert state.exists()
    restarted.ledger.close()


class DarkFlakyExecutor(FlakyExecutor):
    """FlakyExecutor, and a venue in `dark` executes a leg, loses the answer, then cannot be asked."""

    dark: frozenset[str] = frozenset()

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.truth: dict[str, LegOutcome] = {}

    async def execute(self, leg: OrderLeg) -> LegOutcome:
        outcome = await super().execute(leg)
        if leg.venue in self.dark:
            self.truth[leg.client_order_id] = outcome
            raise ExecutionError(f"{leg.venue} order {leg.client_order_id}: outcome still unknown")
        return outcome

    async def recover(self, leg: OrderLeg, *, acknowledged: bool = False) -> LegOutcome:
        if leg.venue in self.dark:
            raise ExecutionError(f"{leg.venue} order {leg.client_order_id}: outcome still unknown")
        return self.truth.get(leg.client_order_id) or await super().recover(leg, acknowledged=acknowledged)


async def test_an_unwind_attempt_whose_venue_goes_dark_never_stops_the_worker(tmp_path: Path) -> None:
    w = World(tmp_path / "state", executor=DarkFlakyExecutor, residuals=SETTINGS)
    w.book("binance", [("99.9", "0.3"), ("99.85", "0.2"), ("99.7", "5")], [("100", "2")])
    w.book("bybit", [("101", "2")], [("102", "5")])
    await w.router.handle(arbitrage())  # the sell leg refused: 1 long, 0.3 unwound at once
    dark = w.executor
    assert isinstance(dark, DarkFlakyExecutor)
    dark.dark = frozenset({"binance"})
    w.book("binance", [("99.9", "5")], [("100", "2")])
    stop = asyncio.Event()
    task = asyncio.create_task(w.router.work_residuals(stop))
    for _ in range(200):
        if any(leg.state == "sent" for leg in w.ledger.legs("arb-1")):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # a pass over the residual after the failure: still running
    assert not task.done()
    dark.dark = frozenset()
    for _ in range(200):
        record = w.ledger.residual("arb-1")
        if record is not None and record.state == "flat":
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert record is not None and record.state == "flat"
    assert [leg.leg for leg in dark.sent if leg.venue == "binance" and leg.leg >= 2] == [
        2,
        3,
    ]  # sent once each
    w.ledger.close()


async def test_a_residual_whose_attempt_stays_unknown_past_its_timeout_halts_trading(tmp_path: Path) -> None:
    w = World(tmp_path / "state", executor=DarkFlakyExecutor, residuals=SETTINGS)
    w.book("binance", [("99.9", "0.3"), ("99.85", "0.2"), ("99.7", "5")], [("100", "2")])
    w.book("bybit", [("101", "2")], [("102", "5")])
    await w.router.handle(arbitrage())
    dark = w.executor
    assert isinstance(dark, DarkFlakyExecutor)
    dark.dark = frozenset({"binance"})
    w.book("binance", [("99.9", "5")], [("100", "2")])
    stop = asyncio.Event()
    task = asyncio.create_task(w.router.work_residuals(stop))
    for _ in range(200):
        if any(leg.state == "sent" for leg in w.ledger.legs("arb-1")):
            break
        await asyncio.sleep(0.01)
    w.clock.now_ns += SETTINGS.timeout_ms * MS  # the venue still cannot tell when the timeout passes
    for _ in range(200):
        if w.kill_switch.halted:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task
    record = w.ledger.residual("arb-1")
    assert record is not None and record.state == "abandoned"
    assert w.kill_switch.halted and "residual of arbitrage arb-1" in (w.kill_switch.reason or "")
    w.ledger.close()
