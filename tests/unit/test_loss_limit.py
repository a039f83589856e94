"""The daily loss limit: a losing paper sequence through SmartRouter halts trading; resume lifts it."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import orjson
import pytest

from connectors.types import Quote
from router.cache import PriceCache
from router.execution import PaperExecutor
from router.kill_switch import KillSwitch
from router.ledger import Ledger
from router.loss import ISSUED_BY, LossGuard
from router.positions import PositionBook, fresh_mids
from router.preferences import PreferenceStore
from router.request import RequestRules
from router.risk import RiskGate, RiskLimits
from router.smart import SmartRouter

SECOND_NS = 1_000_000_000
DAY_NS = 86_400 * SECOND_NS
DEC_7 = 1_796_601_600 * SECOND_NS  # 2026-12-07 00:00:00 UTC
FEES = {"binance": D(10)}  # 10 bps, paid in USDT


class Clock:
    def __init__(self) -> None:
        self.now_ns = DEC_7 + 20 * 3_600 * SECOND_NS  # 20:00 UTC

    def __call__(self) -> int:
        return self.now_ns


class Desk:
    """A paper router over one venue whose book the test moves, with a daily loss limit."""

    def __init__(self, state: Path, max_daily_loss: str, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.cache = PriceCache(ttl_ms=30_000, max_quote_age_ms=1_500, clock_ns=self.clock)
        self.ledger = Ledger.open(state)
        self.kill_switch = KillSwitch(self.ledger, clock_ns=self.clock)
        self.positions = PositionBook("USDT", fresh_mids(self.cache, "USDT"))
        self.loss = LossGuard(
            self.positions, self.kill_switch, self.ledger, D(max_daily_loss), clock_ns=self.clock
        )
        limits = RiskLimits(D(1_000_000), 100, D(5_000_000))
        self.router = SmartRouter(
            self.cache,
            PaperExecutor(self.cache, FEES, clock_ns=self.clock),
            self.ledger,
            PreferenceStore({}, known_venues=("binance",)),
            RiskGate(limits, positions=self.positions, loss_guard=self.loss, clock_ns=self.clock),
            self.kill_switch,
            RequestRules(frozenset({"binance"}), frozenset({"BTC-USDT"})),
            FEES,
            clock_ns=self.clock,
        )
        self.requests = 0

    def book(self, bid: str, ask: str) -> None:
        levels_b, levels_a = ((D(bid), D(5)),), ((D(ask), D(5)),)
        self.cache.update(
            Quote("binance", "BTC-USDT", D(bid), D(5), D(ask), D(5), None, 0, 1, levels_b, levels_a)
        )

    async def trade(self, side: str, bid: str, ask: str) -> dict[str, object]:
        """Move the book, then send a market order for 1 BTC; return its result."""
        self.clock.now_ns += SECOND_NS
        self.book(bid, ask)
        self.requests += 1
        message = {"v": 1, "request_id": f"r-{self.requests}", "user_id": "u1", "kind": "order"}
        message |= {"symbol": "BTC-USDT", "side": side, "quantity": "1"}
        handled = await self.router.handle(orjson.dumps(message))
        result: dict[str, object] = orjson.loads(handled.result or b"")
        return result


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "state"


async def test_a_losing_sequence_halts_trading_below_the_limit_and_resume_lifts_it(state: Path) -> None:
    desk = Desk(state, max_daily_loss="50")
    assert (await desk.trade("buy", "99", "100"))["status"] == "filled"  # 1 @ 100, fee 0.1
    assert (await desk.trade("sell", "80", "81"))["status"] == "filled"  # 1 @ 80, fee 0.08
    # (80 - 100) - 0.1 - 0.08 = -20.18: above -50
    assert desk.positions.realized_on(desk.loss.today()) == D("-20.18")
    assert not desk.kill_switch.halted

    await desk.trade("buy", "99", "100")  # fee 0.1
    await desk.trade("sell", "70", "71")  # (70 - 100) - 0.1 - 0.07 = -30.17 → today -50.35 < -50
    assert desk.kill_switch.halted
    assert desk.kill_switch.issued_by == ISSUED_BY
    assert desk.kill_switch.reason == (
        "daily loss limit: realized PnL on 2026-12-07 (UTC) is -50.35 USDT, below -50 (max_daily_loss 50)"
    )
    refused = await desk.trade("buy", "99", "100")
    assert (refused["status"], refused["reject_code"]) == ("rejected", "halted")
    assert "daily loss limit" in str(refused["message"])

    desk.kill_switch.resume("ops")
    # The resume acknowledges the -50.35: the next losing fill does not halt again at once...
    assert desk.loss.floor(desk.loss.today()) == D("-100.35")
    assert (await desk.trade("buy", "99", "100"))["status"] == "filled"
    assert (await desk.trade("sell", "98", "99"))["status"] == "filled"  # -2 - 0.1 - 0.098 = -2.198
    assert not desk.kill_switch.halted
    # ...but another 50 lost today does: -52.548 - 48.152 = -100.7 < -100.35
    await desk.trade("buy", "99", "100")
    await desk.trade("sell", "52", "53")  # -48 - 0.1 - 0.052 = -48.152
    assert desk.kill_switch.halted and "is -100.7 USDT, below -100.35" in (desk.kill_switch.reason or "")
    desk.ledger.close()


async def test_a_loss_equal_to_the_limit_does_not_halt_one_below_it_does(state: Path) -> None:
    desk = Desk(state, max_daily_loss="20.18")
    await desk.trade("buy", "99", "100")
    await desk.trade("sell", "80", "81")  # today exactly -20.18
    assert not desk.kill_switch.halted
    await desk.trade("buy", "99", "100")  # fee 0.1: -20.28
    assert desk.kill_switch.halted
    desk.ledger.close()


async def test_the_limit_applies_per_utc_day(state: Path) -> None:
    desk = Desk(state, max_daily_loss="25")
    desk.clock.now_ns = DEC_7 + DAY_NS - 10 * SECOND_NS  # 23:59:50 UTC
    await desk.trade("buy", "99", "100")
    await desk.trade("sell", "80", "81")  # -20.18 on 2026-12-07
    desk.clock.now_ns = DEC_7 + DAY_NS  # midnight: a new day starts from 0
    assert desk.positions.realized_on(desk.loss.today()) == 0
    await desk.trade("buy", "99", "100")
    await desk.trade("sell", "80", "81")  # -20.18 on 2026-12-08: above -25 (the 7th's loss does not count)
    assert not desk.kill_switch.halted
    await desk.trade("buy", "99", "100")
    await desk.trade("sell", "90", "91")  # -10.19 → -30.37 on the 8th
    assert desk.kill_switch.halted and "on 2026-12-08 (UTC)" in (desk.kill_switch.reason or "")
    desk.ledger.close()


async def test_a_resumed_day_keeps_its_floor_across_a_restart_and_positions_are_rebuilt(state: Path) -> None:
    first = Desk(state, max_daily_loss="20")
    await first.trade("buy", "99", "100")
    await first.trade("sell", "80", "81")  # -20.18: halted
    assert first.kill_switch.halted
    first.kill_switch.resume("ops")
    first.ledger.close()

    restarted = Desk(state, max_daily_loss="20", clock=first.clock)
    await restarted.router.recover()  # rebuilds positions and PnL from the ledger's fills
    assert restarted.positions.realized_on(restarted.loss.today()) == D("-20.18")
    assert restarted.positions.net("BTC") == 0 and restarted.positions.net("USDT") == D("-20.18")
    assert not restarted.kill_switch.halted  # the resume's acknowledgement was stored
    assert restarted.loss.floor(restarted.loss.today()) == D("-40.18")
    restarted.ledger.close()


async def test_a_day_past_its_floor_with_no_halt_in_force_halts_at_start(state: Path) -> None:
    first = Desk(state, max_daily_loss="20")
    await first.trade("buy", "99", "100")
    await first.trade("sell", "80", "81")
    first.ledger.set_flag("halted", None)  # as if the process died between the fill and its halt
    first.ledger.close()

    restarted = Desk(state, max_daily_loss="20", clock=first.clock)
    assert not restarted.kill_switch.halted
    await restarted.router.recover()
    assert restarted.kill_switch.halted and restarted.kill_switch.issued_by == ISSUED_BY
    restarted.ledger.close()
