"""Ledger: at-most-once claims, stored results, leg intents, flags, retention and failure modes."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from router.errors import LedgerError, RouterError
from router.ledger import _APPLICATION_ID, _MIGRATIONS, FILE_NAME, Ledger, LegIntent

REQUEST = b'{"v":1,"request_id":"r-1","user_id":"alice","kind":"order"}'
RESULT = b'{"v":1,"request_id":"r-1","status":"filled"}'


@pytest.fixture
def ledger(any_ledger: Ledger) -> Ledger:
    """Each test runs on SQLite and on PostgreSQL."""
    return any_ledger


def intent(request_id: str = "r-1", leg: int = 0, **changes: object) -> LegIntent:
    base = LegIntent(
        request_id=request_id,
        leg=leg,
        venue="binance",
        client_order_id=f"sr-{request_id}-{leg}",
        side="buy",
        quantity=Decimal("0.12345678"),
        limit_price=Decimal("64000.50"),
        state="intent",
        outcome=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_three_deliveries_execute_once_and_all_get_the_same_result_bytes(ledger: Ledger) -> None:
    first = ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    assert (first.status, first.request_id, first.result) == ("new", "r-1", None)

    second = ledger.claim("r-1", "alice", REQUEST, now_ns=2)
    assert (second.status, second.result) == ("in_flight", None)

    ledger.complete("r-1", RESULT, now_ns=3)
    answers = [ledger.claim("r-1", "alice", REQUEST, now_ns=4 + i) for i in range(3)]
    assert [a.status for a in answers] == ["done", "done", "done"]
    assert all(a.result == RESULT for a in answers)
    assert ledger.result_for("r-1") == RESULT


def test_a_resent_request_with_a_known_id_but_another_body_is_not_executed(ledger: Ledger) -> None:
    ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    ledger.complete("r-1", RESULT, now_ns=2)

    again = ledger.claim("r-1", "mallory", b'{"other":"body"}', now_ns=3)

    assert (again.status, again.result) == ("done", RESULT)


def test_complete_twice_with_the_same_bytes_is_a_no_op(ledger: Ledger) -> None:
    ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    ledger.complete("r-1", RESULT, now_ns=2)
    ledger.complete("r-1", RESULT, now_ns=3)

    assert ledger.result_for("r-1") == RESULT
    assert ledger.stats()["requests_done"] == 1


def test_complete_with_a_different_result_is_refused_and_keeps_the_first(ledger: Ledger) -> None:
    ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    ledger.complete("r-1", RESULT, now_ns=2)

    with pytest.raises(LedgerError, match="different result"):
        ledger.complete("r-1", b'{"status":"failed"}', now_ns=3)

    assert ledger.result_for("r-1") == RESULT


def test_complete_of_an_unknown_request_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="never claimed"):
        ledger.complete("ghost", RESULT, now_ns=1)
    assert ledger.result_for("ghost") is None


def test_result_for_a_request_still_executing_is_none(ledger: Ledger) -> None:
    ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    assert ledger.result_for("r-1") is None


def test_claim_of_an_empty_request_id_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="empty request_id"):
        ledger.claim("", "alice", REQUEST, now_ns=1)


def test_in_flight_lists_exactly_the_claimed_but_unfinished_oldest_first(ledger: Ledger) -> None:
    ledger.claim("late", "alice", b"late-body", now_ns=30)
    ledger.claim("finished", "alice", b"finished-body", now_ns=10)
    ledger.claim("early", "bob", b"early-body", now_ns=20)
    ledger.complete("finished", RESULT, now_ns=40)

    assert ledger.in_flight() == [("early", b"early-body"), ("late", b"late-body")]


def test_legs_round_trip_with_exact_decimals_through_sent_and_settled(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        ledger.claim("r-1", "alice", REQUEST, now_ns=1)
        ledger.record_leg_intent(intent(leg=1, side="sell", quantity=Decimal("1E-8"), limit_price=None))
        ledger.record_leg_intent(intent(leg=0))
        ledger.mark_leg("r-1", 0, "sent")
        ledger.mark_leg("r-1", 0, "settled", b'{"filled":"0.12345678"}')

    with Ledger.open(tmp_path) as reopened:
        legs = reopened.legs("r-1")

    assert [leg.leg for leg in legs] == [0, 1]
    assert legs[0] == intent(leg=0, state="settled", outcome=b'{"filled":"0.12345678"}')
    assert str(legs[0].quantity) == "0.12345678"
    assert str(legs[0].limit_price) == "64000.50"
    assert legs[1] == intent(leg=1, side="sell", quantity=Decimal("1E-8"), limit_price=None)
    assert str(legs[1].quantity) == "1E-8"


def test_unsettled_legs_are_those_in_intent_or_sent(ledger: Ledger) -> None:
    for rid in ("a", "b"):
        ledger.claim(rid, "alice", REQUEST, now_ns=1)
        ledger.record_leg_intent(intent(rid, 0))
        ledger.record_leg_intent(intent(rid, 1))
    ledger.mark_leg("a", 0, "sent")
    ledger.mark_leg("a", 1, "settled", b"{}")

    unsettled = ledger.unsettled_legs()

    assert [(leg.request_id, leg.leg, leg.state) for leg in unsettled] == [
        ("a", 0, "sent"),
        ("b", 0, "intent"),
        ("b", 1, "intent"),
    ]


def test_recording_the_same_intent_again_is_a_no_op_even_after_it_moved_on(ledger: Ledger) -> None:
    ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    ledger.record_leg_intent(intent())
    ledger.mark_leg("r-1", 0, "sent")

    ledger.record_leg_intent(intent(quantity=Decimal("0.123456780")))  # same value, other scale

    assert [leg.state for leg in ledger.legs("r-1")] == ["sent"]


@pytest.mark.parametrize(
    "change",
    [
        {"venue": "okx"},
        {"client_order_id": "sr-other"},
        {"side": "sell"},
        {"quantity": Decimal("0.2")},
        {"limit_price": None},
        {"limit_price": Decimal("64000.51")},
    ],
)
def test_a_conflicting_intent_for_a_recorded_leg_is_refused(ledger: Ledger, change: dict[str, Any]) -> None:
    ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    ledger.record_leg_intent(intent())

    with pytest.raises(LedgerError, match="different fields"):
        ledger.record_leg_intent(intent(**change))

    assert ledger.legs("r-1") == [intent()]


def test_a_client_order_id_cannot_be_reused_by_another_leg(ledger: Ledger) -> None:
    ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    ledger.record_leg_intent(intent(leg=0))

    with pytest.raises(LedgerError, match="'sr-r-1-0' is already used by leg 0 of 'r-1'"):
        ledger.record_leg_intent(intent(leg=1, client_order_id="sr-r-1-0"))

    assert len(ledger.legs("r-1")) == 1


def test_a_leg_for_a_request_that_is_not_executing_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="not executing"):
        ledger.record_leg_intent(intent("ghost"))
    ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    ledger.complete("r-1", RESULT, now_ns=2)
    with pytest.raises(LedgerError, match="not executing"):
        ledger.record_leg_intent(intent())
    assert ledger.unsettled_legs() == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"side": "hold"}, "side"),
        ({"quantity": Decimal(0)}, "quantity"),
        ({"quantity": Decimal("-1")}, "quantity"),
        ({"quantity": Decimal("NaN")}, "quantity"),
        ({"quantity": Decimal("Infinity")}, "quantity"),
        ({"quantity": 0.5}, "quantity"),
        ({"limit_price": Decimal("sNaN")}, "limit_price"),
        ({"leg": -1}, "leg"),
        ({"venue": ""}, "non-empty"),
        ({"state": "sent"}, "state 'intent'"),
        ({"outcome": b"{}"}, "state 'intent'"),
    ],
)
def test_an_invalid_intent_is_refused_with_the_reason(
    ledger: Ledger, change: dict[str, Any], problem: str
) -> None:
    ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    with pytest.raises(LedgerError, match=problem):
        ledger.record_leg_intent(intent(**change))
    assert ledger.legs("r-1") == []


def test_mark_leg_moves_only_forward_and_repeats_are_no_ops(ledger: Ledger) -> None:
    ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    ledger.record_leg_intent(intent())
    ledger.mark_leg("r-1", 0, "settled", b'{"filled":"1"}')
    ledger.mark_leg("r-1", 0, "settled", b'{"filled":"1"}')

    with pytest.raises(LedgerError, match="is settled"):
        ledger.mark_leg("r-1", 0, "sent")
    with pytest.raises(LedgerError, match="is settled"):
        ledger.mark_leg("r-1", 0, "settled", b'{"filled":"2"}')

    assert ledger.legs("r-1")[0].outcome == b'{"filled":"1"}'


def test_mark_leg_settled_without_outcome_or_unknown_leg_or_bad_state_is_refused(ledger: Ledger) -> None:
    ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    ledger.record_leg_intent(intent())

    with pytest.raises(LedgerError, match="needs an outcome"):
        ledger.mark_leg("r-1", 0, "settled")
    with pytest.raises(LedgerError, match="not recorded"):
        ledger.mark_leg("r-1", 7, "sent")
    with pytest.raises(LedgerError, match="must be 'sent' or 'settled'"):
        ledger.mark_leg("r-1", 0, "intent")  # type: ignore[arg-type]

    assert ledger.legs("r-1")[0].state == "intent"


def test_flags_persist_across_close_and_reopen_and_none_deletes(tmp_path: Path) -> None:
    halt = b'{"v":1,"command":"halt","reason":"drill","issued_by":"ops"}'
    with Ledger.open(tmp_path) as ledger:
        ledger.set_flag("halted", halt)
        ledger.set_flag("other", b"1")
        ledger.set_flag("other", b"2")

    with Ledger.open(tmp_path) as ledger:
        assert ledger.get_flag("halted") == halt
        assert ledger.get_flag("other") == b"2"
        ledger.set_flag("halted", None)
        ledger.set_flag("never-set", None)

    with Ledger.open(tmp_path) as ledger:
        assert ledger.get_flag("halted") is None
        assert ledger.stats()["flags"] == 1


def test_claims_and_results_survive_close_and_reopen(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        ledger.claim("done", "alice", REQUEST, now_ns=1)
        ledger.complete("done", RESULT, now_ns=2)
        ledger.claim("crashed", "alice", REQUEST, now_ns=3)

    with Ledger.open(tmp_path) as ledger:
        assert ledger.claim("done", "alice", REQUEST, now_ns=4).result == RESULT
        assert ledger.claim("crashed", "alice", REQUEST, now_ns=5).status == "in_flight"
        assert ledger.in_flight() == [("crashed", REQUEST)]


def _no_fold(stored: bytes | None, legs: object) -> bytes:
    return b"{}"


def test_prune_deletes_the_oldest_answered_requests_up_to_the_first_one_kept(ledger: Ledger) -> None:
    """Pruning takes a prefix of the claim order: the replay of what is left keeps its order."""
    for rid, claimed in (("old", 1), ("old-leg-open", 2), ("old-after", 3), ("recent", 4), ("running", 5)):
        ledger.claim(rid, "alice", REQUEST, now_ns=claimed)
    ledger.record_leg_intent(intent("old-leg-open"))
    for rid in ("old", "old-leg-open", "old-after"):
        ledger.complete(rid, RESULT, now_ns=100)
    ledger.complete("recent", RESULT, now_ns=200)

    assert ledger.prune_done(150, _no_fold) == 1

    assert ledger.result_for("old") is None
    assert ledger.result_for("old-leg-open") == RESULT
    assert ledger.result_for("old-after") == RESULT  # after a request kept: kept too
    assert ledger.result_for("recent") == RESULT
    assert ledger.in_flight() == [("running", REQUEST)]
    ledger.mark_leg("old-leg-open", 0, "settled", b'{"fills": []}')
    assert ledger.prune_done(150, _no_fold) == 2
    assert ledger.result_for("old-after") is None
    assert ledger.legs("old-leg-open") == []
    assert ledger.result_for("recent") == RESULT


def test_prune_folds_the_pruned_settled_legs_into_the_carried_history(ledger: Ledger) -> None:
    seen: list[tuple[bytes | None, list[str]]] = []

    def fold(stored: bytes | None, legs: Sequence[tuple[bytes, LegIntent]]) -> bytes:
        seen.append((stored, [leg.request_id for _, leg in legs]))
        return b"carried-%d" % len(seen)

    for rid, claimed in (("a", 1), ("b", 2), ("c", 3)):
        ledger.claim(rid, "alice", REQUEST, now_ns=claimed)
        ledger.record_leg_intent(intent(rid))
        ledger.mark_leg(rid, 0, "settled", b'{"fills": []}')
        ledger.complete(rid, RESULT, now_ns=10)

    assert ledger.prune_done(100, fold, limit=2) == 2
    assert ledger.prune_done(100, fold, limit=2) == 1
    assert ledger.prune_done(100, fold, limit=2) == 0

    assert seen == [(None, ["a", "b"]), (b"carried-1", ["c"])]
    assert ledger.history() == (b"carried-2", [])


def test_prune_keeps_a_request_whose_result_is_owed(ledger: Ledger) -> None:
    ledger.claim("owed", "alice", REQUEST, now_ns=1)
    ledger.owe("owed", since_ns=1, error="venue dark")
    ledger.complete("owed", RESULT, now_ns=2)
    assert ledger.prune_done(100, _no_fold) == 0
    ledger.answered("owed")
    assert ledger.prune_done(100, _no_fold) == 1


def test_a_pruned_request_id_is_forgotten(ledger: Ledger) -> None:
    ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    ledger.complete("r-1", RESULT, now_ns=2)
    ledger.prune_done(3, _no_fold)

    assert ledger.claim("r-1", "alice", REQUEST, now_ns=4).status == "new"


def test_stats_start_at_zero_for_every_state(ledger: Ledger) -> None:
    assert ledger.stats() == dict.fromkeys(
        ("requests_executing", "requests_done", "legs_intent", "legs_sent", "legs_settled", "flags"), 0
    )


def test_a_state_dir_that_cannot_be_created_is_a_ledger_error_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    state_dir = blocker / "state"

    with pytest.raises(LedgerError, match=str(state_dir / FILE_NAME)) as caught:
        Ledger.open(state_dir)

    assert isinstance(caught.value, RouterError)
    assert isinstance(caught.value.__cause__, OSError)


def test_a_file_that_is_not_sqlite_is_a_ledger_error_and_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    garbage = b"this is not an SQLite database, it is a shopping list\n" * 200
    path.write_bytes(garbage)

    with pytest.raises(LedgerError, match=str(path)) as caught:
        Ledger(path)

    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert path.read_bytes() == garbage


def test_another_programs_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE things (x)")
    conn.close()

    with pytest.raises(LedgerError, match="not a smartroute ledger"):
        Ledger(path)


def test_a_ledger_from_a_newer_smartroute_is_refused(tmp_path: Path) -> None:
    Ledger.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()

    with pytest.raises(LedgerError, match="schema version 99 is newer"):
        Ledger.open(tmp_path)


def test_the_file_is_in_wal_mode_with_the_schema_version_set(tmp_path: Path) -> None:
    Ledger.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(_MIGRATIONS) == 5
    finally:
        conn.close()


def test_a_version_1_ledger_is_upgraded_in_place_and_keeps_what_it_held(tmp_path: Path) -> None:
    """A ledger written before acknowledgements were recorded opens, gains the table, loses nothing."""
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    try:
        for statement in _MIGRATIONS[0].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO requests VALUES ('r-1', 'u1', x'7b7d', 'executing', NULL, 1, NULL)")
        conn.execute("INSERT INTO legs VALUES ('r-1', 0, 'okx', 'coid-1', 'buy', '1', '100', 'sent', NULL)")
        conn.execute("PRAGMA user_version = 1")
        conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
        conn.commit()
    finally:
        conn.close()
    ledger = Ledger.open(tmp_path)
    try:
        assert [leg.client_order_id for leg in ledger.legs("r-1")] == ["coid-1"]
        assert ledger.acknowledged("r-1") == {}
        ledger.record_acknowledged("r-1", 0, "OKX-77")
        ledger.record_acknowledged("r-1", 0, "OKX-77")  # a repeat is a no-op
        assert ledger.acknowledged("r-1") == {0: "OKX-77"}
    finally:
        ledger.close()


def test_the_schema_refuses_states_outside_its_checks(tmp_path: Path) -> None:
    Ledger.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(
                "INSERT INTO requests (request_id, user_id, request, state, claimed_ns)"
                " VALUES ('x', 'u', x'00', 'half-done', 1)"
            )
    finally:
        conn.close()


def test_use_after_close_is_a_ledger_error_and_close_is_idempotent(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path)
    ledger.close()
    ledger.close()

    with pytest.raises(LedgerError, match="closed"):
        ledger.claim("r-1", "alice", REQUEST, now_ns=1)
    with pytest.raises(LedgerError, match="closed"):
        ledger.get_flag("halted")


def test_concurrent_claims_from_two_ledgers_on_one_file_let_exactly_one_execute(tmp_path: Path) -> None:
    Ledger.open(tmp_path).close()
    request_ids = [f"r-{i}" for i in range(25)]
    barrier = threading.Barrier(2)
    outcomes: list[list[tuple[str, str]]] = [[], []]
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            with Ledger.open(tmp_path) as own:
                for rid in request_ids:
                    barrier.wait(timeout=10)
                    outcomes[slot].append((rid, own.claim(rid, "alice", REQUEST, now_ns=1).status))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert all(not thread.is_alive() for thread in threads)
    per_request = Counter(rid for rid, status in outcomes[0] + outcomes[1] if status == "new")
    assert per_request == dict.fromkeys(request_ids, 1)
    assert {status for _, status in outcomes[0] + outcomes[1]} == {"new", "in_flight"}
