"""Ledger residuals: an arbitrage's unhedged quantity is recorded, worked attempt by attempt, and kept."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from router.errors import LedgerError
from router.ledger import _APPLICATION_ID, _MIGRATIONS, FILE_NAME, Ledger, LegIntent, ResidualRecord

REQUEST = b'{"v":1,"request_id":"arb-1","user_id":"alice","kind":"arbitrage"}'


@pytest.fixture
def ledger(any_ledger: Ledger) -> Ledger:
    """Each test runs on SQLite and on PostgreSQL."""
    any_ledger.claim("arb-1", "alice", REQUEST, now_ns=1)
    return any_ledger


def residual(**changes: object) -> ResidualRecord:
    base = ResidualRecord(
        "arb-1", "binance", "BTC-USDT", "sell", Decimal("0.6"), Decimal("0.6"), 5, 0, "open", 5
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def attempt(leg: int, venue: str = "binance") -> LegIntent:
    coid = f"sr-arb-1-{leg}"
    return LegIntent("arb-1", leg, venue, coid, "sell", Decimal("0.6"), Decimal("99.9"), "intent", None)


def test_a_residual_is_recorded_once_and_read_back_exactly(ledger: Ledger) -> None:
    assert ledger.residual("arb-1") is None
    assert ledger.record_residual(residual()) == residual()
    # Recording again (a restart rebuilding it from the legs) returns what is stored, unchanged.
    assert ledger.record_residual(residual(quantity=Decimal("0.7"), remaining=Decimal("0.7"))) == residual()
    assert ledger.open_residuals() == [residual()]


def test_an_attempt_is_a_leg_counted_once_and_the_next_waits_for_it_to_settle(ledger: Ledger) -> None:
    ledger.record_residual(residual())
    ledger.complete("arb-1", b"{}", now_ns=2)  # the result went out; the residual is still worked

    assert ledger.record_residual_attempt(attempt(2), now_ns=6)
    assert not ledger.record_residual_attempt(attempt(2), now_ns=6)  # another worker took this one
    assert not ledger.record_residual_attempt(attempt(3), now_ns=6)  # leg 2 is not settled yet
    ledger.mark_leg("arb-1", 2, "sent")
    ledger.mark_leg("arb-1", 2, "settled", b'{"fills": []}')
    assert ledger.record_residual_attempt(attempt(3, "okx"), now_ns=7)
    stored = ledger.residual("arb-1")
    assert stored is not None and (stored.attempts, stored.updated_ns) == (2, 7)
    assert [leg.leg for leg in ledger.legs("arb-1")] == [2, 3]


def test_a_flat_residual_is_final_and_no_longer_worked(ledger: Ledger) -> None:
    ledger.record_residual(residual())
    ledger.update_residual("arb-1", remaining=Decimal("0.2"), state="open", now_ns=8)
    flat = ledger.update_residual("arb-1", remaining=Decimal(0), state="flat", now_ns=9)
    assert (flat.remaining, flat.state) == (Decimal(0), "flat")
    assert ledger.open_residuals() == []
    assert ledger.update_residual("arb-1", remaining=Decimal(0), state="flat", now_ns=10) == flat  # repeat
    with pytest.raises(LedgerError, match="already flat"):
        ledger.update_residual("arb-1", remaining=Decimal(0), state="abandoned", now_ns=11)
    with pytest.raises(LedgerError, match="no open residual"):
        ledger.record_residual_attempt(attempt(2), now_ns=12)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"state": "flat"}, "must be 'open' or 'left'"),
        ({"side": "hold"}, "side must be"),
        ({"quantity": Decimal(0), "remaining": Decimal(0)}, "quantity must be"),
        ({"remaining": Decimal(1)}, "remaining must be"),
        ({"attempts": 1}, "no attempt"),
    ],
)
def test_an_invalid_residual_is_refused_with_the_reason(
    ledger: Ledger, changes: dict[str, object], problem: str
) -> None:
    with pytest.raises(LedgerError, match=problem):
        ledger.record_residual(residual(**changes))


def test_prune_keeps_a_done_request_while_its_residual_is_open(ledger: Ledger) -> None:
    ledger.record_residual(residual())
    ledger.complete("arb-1", b"{}", now_ns=2)
    assert ledger.prune_done(100, lambda stored, legs: b"{}") == 0
    ledger.update_residual("arb-1", remaining=Decimal(0), state="flat", now_ns=3)
    assert ledger.prune_done(100, lambda stored, legs: b"{}") == 1


def test_a_version_2_ledger_is_upgraded_in_place_and_keeps_what_it_held(tmp_path: Path) -> None:
    """A ledger written before residuals were tracked opens, gains the table, loses nothing."""
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    try:
        for migration in _MIGRATIONS[:2]:
            for statement in migration.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute("INSERT INTO requests VALUES ('arb-1', 'u1', x'7b7d', 'executing', NULL, 1, NULL)")
        conn.execute("INSERT INTO legs VALUES ('arb-1', 0, 'okx', 'coid-1', 'buy', '1', '100', 'sent', NULL)")
        conn.execute("INSERT INTO acknowledged_legs VALUES ('arb-1', 0, 'OKX-77')")
        conn.execute("PRAGMA user_version = 2")
        conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
        conn.commit()
    finally:
        conn.close()
    with Ledger.open(tmp_path) as ledger:
        assert [leg.client_order_id for leg in ledger.legs("arb-1")] == ["coid-1"]
        assert ledger.acknowledged("arb-1") == {0: "OKX-77"}
        assert ledger.residual("arb-1") is None
        ledger.record_residual(residual())
        assert ledger.open_residuals() == [residual()]
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    finally:
        conn.close()
