"""Risk: notional limits, orders per second, and the persisted kill switch (positions: test_positions.py)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from router.errors import RouterError
from router.kill_switch import HALT_FLAG, InvalidControl, KillSwitch
from router.ledger import Ledger
from router.risk import PlannedLeg, RiskGate, RiskLimits, RiskRejected

LIMITS = RiskLimits(
    max_order_notional=Decimal(10_000), max_orders_per_second=3, max_gross_exposure=Decimal(50_000)
)
SECOND_NS = 1_000_000_000


class FakeClock:
    def __init__(self, now_ns: int = 1_000 * SECOND_NS) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def leg(venue: str = "binance", side: str = "buy", quantity: str = "1", price: str = "100") -> PlannedLeg:
    return PlannedLeg(venue, "BTC-USDT", side, Decimal(quantity), Decimal(price))  # type: ignore[arg-type]


def gate(limits: RiskLimits = LIMITS) -> tuple[RiskGate, FakeClock]:
    clock = FakeClock()
    return RiskGate(limits, clock_ns=clock), clock


# --- order notional ---------------------------------------------------------------------------


def test_notional_equal_to_the_global_limit_passes() -> None:
    risk, _ = gate()
    risk.check(
        [leg(quantity="0.5", price="10000"), leg("okx", quantity="0.5", price="10000")],
        user_max_order_notional=None,
    )


def test_notional_just_above_the_global_limit_is_rejected() -> None:
    risk, _ = gate()

    with pytest.raises(RiskRejected) as caught:
        risk.check([leg(quantity="1", price="10000.00000001")], user_max_order_notional=None)

    assert caught.value.limit == "max_order_notional"
    assert caught.value.reject_code == "risk_limit"
    assert "10000.00000001" in str(caught.value)
    assert "max_order_notional 10000" in str(caught.value)
    assert isinstance(caught.value, RouterError)


def test_smaller_user_limit_binds_and_is_named() -> None:
    risk, _ = gate()
    risk.check([leg(quantity="2", price="2500")], user_max_order_notional=Decimal(5_000))

    with pytest.raises(RiskRejected) as caught:
        risk.check([leg(quantity="2", price="2500.00000001")], user_max_order_notional=Decimal(5_000))

    assert caught.value.limit == "user_max_order_notional"
    assert "user_max_order_notional 5000" in str(caught.value)


def test_larger_user_limit_does_not_lift_the_global_one() -> None:
    risk, _ = gate()

    with pytest.raises(RiskRejected) as caught:
        risk.check([leg(quantity="2", price="6000")], user_max_order_notional=Decimal(1_000_000))

    assert caught.value.limit == "max_order_notional"


def test_rejected_order_does_not_count_toward_the_rate() -> None:
    risk, _ = gate()
    for _ in range(5):
        with pytest.raises(RiskRejected):
            risk.check([leg(price="20000")], user_max_order_notional=None)

    for _ in range(LIMITS.max_orders_per_second):
        risk.check([leg()], user_max_order_notional=None)


# --- orders per second ------------------------------------------------------------------------


def test_rate_limit_rejects_the_order_after_n_in_one_second_then_recovers() -> None:
    risk, clock = gate()
    start = clock.now_ns
    for i in range(3):
        clock.now_ns = start + i * 100_000_000
        risk.check([leg()], user_max_order_notional=None)

    clock.now_ns = start + SECOND_NS - 1
    with pytest.raises(RiskRejected) as caught:
        risk.check([leg()], user_max_order_notional=None)
    assert caught.value.limit == "max_orders_per_second"
    assert "max_orders_per_second 3" in str(caught.value)

    clock.now_ns = start + SECOND_NS  # the first order has left the window
    risk.check([leg()], user_max_order_notional=None)
    with pytest.raises(RiskRejected):
        risk.check([leg()], user_max_order_notional=None)


def test_routers_sharing_a_ledger_split_the_order_rate_between_them() -> None:
    limits = RiskLimits(Decimal(10_000), 7, Decimal(50_000))
    risk, _ = gate(limits)
    risk.routers = 3  # what the lease keeper counted alive in the shared ledger
    for _ in range(2):  # 7 // 3
        risk.check([leg()], user_max_order_notional=None)
    with pytest.raises(
        RiskRejected, match=r"max_orders_per_second 2, this router's share \(3 routers alive\) of 7"
    ):
        risk.check([leg()], user_max_order_notional=None)
    risk.routers = 1  # the others are gone: the whole limit is this router's again
    risk.check([leg()], user_max_order_notional=None)


@pytest.mark.parametrize(
    "bad",
    [
        {"quantity": Decimal(0)},
        {"quantity": Decimal(-1)},
        {"price": Decimal("NaN")},
        {"price": Decimal("Infinity")},
        {"price": 100.0},
        {"side": "hold"},
        {"venue": ""},
        {"quantity": Decimal("1e-50")},
    ],
)
def test_malformed_planned_leg_is_refused(bad: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "venue": "okx", "symbol": "BTC-USDT", "side": "buy", "quantity": Decimal(1), "price": Decimal(1),
    }  # fmt: skip
    with pytest.raises(ValueError):
        PlannedLeg(**{**fields, **bad})  # type: ignore[arg-type]


def test_empty_order_and_bad_limits_are_refused() -> None:
    risk, _ = gate()
    with pytest.raises(ValueError):
        risk.check([], user_max_order_notional=None)
    with pytest.raises(ValueError):
        RiskLimits(Decimal(1), 0, Decimal(1))
    with pytest.raises(ValueError):
        RiskLimits(Decimal(0), 1, Decimal(1))
    with pytest.raises(ValueError):
        RiskLimits(Decimal(1), 1, Decimal(1), {"BTC": Decimal(0)})


# --- kill switch ------------------------------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path) as opened:
        yield opened


def control(command: object = "halt", **fields: object) -> bytes:
    body: dict[str, object] = {"v": 1, "command": command, "reason": "exchange outage", "issued_by": "ops-1"}
    return orjson.dumps({**body, **fields})


def test_new_switch_starts_running(ledger: Ledger) -> None:
    switch = KillSwitch(ledger)
    assert not switch.halted
    assert (switch.reason, switch.issued_by, switch.since_ns) == (None, None, None)


def test_halt_persists_across_a_new_switch_on_the_same_ledger_file(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as first:
        assert KillSwitch(first, clock_ns=lambda: 42).apply(control()) is True

    with Ledger.open(tmp_path) as reopened:
        switch = KillSwitch(reopened, clock_ns=lambda: 99)
        assert switch.halted
        assert (switch.reason, switch.issued_by, switch.since_ns) == ("exchange outage", "ops-1", 42)


def test_resume_clears_the_halt_and_it_stays_cleared_after_restart(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as first:
        switch = KillSwitch(first)
        switch.halt("maintenance", "cli")
        assert switch.apply(control("resume", reason=None, issued_by="ops-2")) is False
        assert not switch.halted
        assert switch.reason is None

    with Ledger.open(tmp_path) as reopened:
        assert not KillSwitch(reopened).halted
        assert reopened.get_flag(HALT_FLAG) is None


def test_halting_twice_is_idempotent_and_keeps_the_first_halt(ledger: Ledger) -> None:
    clock = FakeClock(now_ns=10)
    switch = KillSwitch(ledger, clock_ns=clock)
    switch.halt("first", "ops-1")
    stored = ledger.get_flag(HALT_FLAG)

    clock.now_ns = 20
    assert switch.apply(control(reason="second", issued_by="ops-2")) is True

    assert (switch.reason, switch.issued_by, switch.since_ns) == ("first", "ops-1", 10)
    assert ledger.get_flag(HALT_FLAG) == stored


def test_resume_while_running_is_a_no_op(ledger: Ledger) -> None:
    switch = KillSwitch(ledger)
    switch.resume("ops-1")
    assert not switch.halted


def test_unreadable_stored_state_counts_as_halted(ledger: Ledger) -> None:
    ledger.set_flag(HALT_FLAG, b"\x00garbage")
    switch = KillSwitch(ledger)
    assert switch.halted
    assert switch.reason is not None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"not json", "value"),
        (b"[]", "value"),
        (b"x" * 5000, "value"),
        (control(v=2), "v"),
        (orjson.dumps({"command": "halt", "reason": "r", "issued_by": "me"}), "v"),
        (control("pause"), "command"),
        (control(command=None), "command"),
        (control(reason=""), "reason"),
        (control(reason=None), "reason"),
        (control(reason="x" * 257), "reason"),
        (control(reason="line\nbreak"), "reason"),
        (control("resume", reason=5), "reason"),
        (control(issued_by=""), "issued_by"),
        (control(issued_by="y" * 65), "issued_by"),
        (control(issued_by=7), "issued_by"),
        (control(target="all"), "target"),
    ],
)
def test_invalid_control_message_is_rejected_and_changes_nothing(
    ledger: Ledger, raw: bytes, field: str
) -> None:
    switch = KillSwitch(ledger)

    with pytest.raises(InvalidControl) as caught:
        switch.apply(raw)

    assert caught.value.field == field
    assert isinstance(caught.value, RouterError)
    assert not switch.halted
    assert ledger.get_flag(HALT_FLAG) is None


def test_limits_on_reason_and_issued_by_are_inclusive(ledger: Ledger) -> None:
    switch = KillSwitch(ledger)
    assert switch.apply(control(reason="r" * 256, issued_by="i" * 64)) is True


def test_direct_halt_with_bad_arguments_is_rejected(ledger: Ledger) -> None:
    switch = KillSwitch(ledger)
    with pytest.raises(InvalidControl):
        switch.halt("", "ops")
    with pytest.raises(InvalidControl):
        switch.resume("")
    assert not switch.halted
