"""Signed control and preferences (`router.signed_settings`): who may send them, fresh, never replayed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from router.ledger import Ledger
from router.signatures import KeyRing, Unauthenticated, sign
from router.signed_settings import SettingsGuard

S = 1_000_000_000
NOW = 1_800_000_000 * S
MAX_AGE_MS = 60_000
OPS, OPS_2, ALICE, BOB = (Ed25519PrivateKey.generate() for _ in range(4))
OPERATORS = KeyRing({"ops": (OPS.public_key(),), "ops-2": (OPS_2.public_key(),)})
USERS = KeyRing({"alice": (ALICE.public_key(),), "bob": (BOB.public_key(),)})


class Clock:
    def __init__(self) -> None:
        self.now_ns = NOW

    def __call__(self) -> int:
        return self.now_ns


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path) as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


def guard_on(ledger: Ledger, clock: Clock, *, required: bool = True) -> SettingsGuard:
    return SettingsGuard(
        ledger, required=required, users=USERS, operators=OPERATORS, max_age_ms=MAX_AGE_MS, clock_ns=clock
    )


def control(
    command: str, issued_ns: int, by: str = "ops", key: Ed25519PrivateKey = OPS, **extra: object
) -> tuple[bytes, list[tuple[str, bytes]]]:
    message: dict[str, object] = {"v": 1, "command": command, "issued_by": by, "issued_ns": issued_ns}
    if command == "halt":
        message["reason"] = "incident"
    value = orjson.dumps(message | extra)
    return value, sign("control", value, by, key)


def prefs(
    user: str, issued_ns: int, signer: str, key: Ed25519PrivateKey
) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    value = orjson.dumps({"v": 1, "user_id": user, "strategy": "split", "issued_ns": issued_ns})
    return user, value, sign("preferences", value, signer, key)


def apply_control(
    guard: SettingsGuard, value: bytes, headers: list[tuple[str, bytes]], *, history: bool = False
) -> bool:
    admitted = guard.admit_control(value, headers, history=history)
    if admitted.apply:
        guard.control_applied(admitted)
    return admitted.apply


def test_without_required_signatures_everything_is_applied_and_nothing_recorded(
    ledger: Ledger, clock: Clock
) -> None:
    guard = guard_on(ledger, clock, required=False)
    newer = orjson.dumps({"v": 1, "command": "resume", "issued_by": "ops", "issued_ns": NOW})
    admitted = guard.admit_control(newer, [], history=False)
    assert admitted.apply
    guard.control_applied(admitted)
    assert guard.admit_preferences("alice", None, [], history=False).apply
    # Nothing was recorded: once signatures are required, an older signed message is still news.
    assert guard_on(ledger, clock).admit_control(*control("resume", NOW - S), history=False).apply


def test_a_fresh_halt_signed_by_an_operator_is_applied_and_the_same_bytes_again_are_a_replay(
    ledger: Ledger, clock: Clock
) -> None:
    guard = guard_on(ledger, clock)
    value, headers = control("halt", NOW - S)
    assert apply_control(guard, value, headers)
    with pytest.raises(Unauthenticated, match="replayed or out of order"):
        guard.admit_control(value, headers, history=False)
    # Read again from the topic at the next start: already applied, skipped without complaint.
    assert not guard_on(ledger, clock).admit_control(value, headers, history=True).apply


def test_an_old_signed_resume_replayed_after_a_halt_never_resumes(ledger: Ledger, clock: Clock) -> None:
    guard = guard_on(ledger, clock)
    old_resume = control("resume", NOW - 10 * S)
    assert apply_control(guard, *old_resume)
    assert apply_control(guard, *control("halt", NOW - 5 * S))
    with pytest.raises(Unauthenticated, match="not newer than the last applied"):
        guard.admit_control(*old_resume, history=False)
    # Another operator's resume that was signed before the halt and never applied: still refused.
    with pytest.raises(Unauthenticated, match="not newer than the halt"):
        guard.admit_control(*control("resume", NOW - 6 * S, by="ops-2", key=OPS_2), history=False)
    assert apply_control(guard, *control("resume", NOW))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unsigned", "no smartroute-signer header"),
        ("signed by a user", "unknown signer 'alice'"),
        ("issued_by is not the signer", "issued_by 'someone' is not the signer 'ops'"),
        ("no issued_ns", "issued_ns .* is required"),
        ("older than max_message_age_ms", "61000 ms old, beyond max_message_age_ms 60000"),
        ("from the future", "in the future"),
        ("signed for preferences", "does not verify"),
        ("no value", "without a value"),
    ],
)
def test_a_control_message_that_does_not_prove_a_fresh_operator_is_refused(
    ledger: Ledger, clock: Clock, case: str, expected: str
) -> None:
    value, headers = control("resume", NOW - S)
    if case == "unsigned":
        headers = []
    elif case == "signed by a user":
        value, headers = control("resume", NOW - S, by="alice", key=ALICE)
    elif case == "issued_by is not the signer":
        value = orjson.dumps({"v": 1, "command": "resume", "issued_by": "someone", "issued_ns": NOW})
        headers = sign("control", value, "ops", OPS)
    elif case == "no issued_ns":
        value = orjson.dumps({"v": 1, "command": "resume", "issued_by": "ops"})
        headers = sign("control", value, "ops", OPS)
    elif case == "older than max_message_age_ms":
        value, headers = control("resume", NOW - 61 * S)
    elif case == "from the future":
        value, headers = control("resume", NOW + 120 * S)
    elif case == "signed for preferences":
        headers = sign("preferences", value, "ops", OPS)
    with pytest.raises(Unauthenticated, match=expected):
        guard_on(ledger, clock).admit_control(None if case == "no value" else value, headers, history=False)


def test_preferences_are_changed_by_their_user_or_an_operator_only(ledger: Ledger, clock: Clock) -> None:
    guard = guard_on(ledger, clock)
    assert guard.admit_preferences(*prefs("alice", NOW - 3 * S, "alice", ALICE), history=False).apply
    assert guard.admit_preferences(*prefs("alice", NOW - 2 * S, "ops", OPS), history=False).apply
    with pytest.raises(Unauthenticated, match="'bob' may not change 'alice''s preferences"):
        guard.admit_preferences(*prefs("alice", NOW - S, "bob", BOB), history=False)
    with pytest.raises(Unauthenticated, match="tombstone"):
        guard.admit_preferences("alice", None, [], history=False)
    _, value, headers = prefs("alice", NOW - S, "alice", ALICE)
    with pytest.raises(Unauthenticated, match="matching the record key"):
        guard.admit_preferences("bob", value, headers, history=False)


def test_preferences_never_go_back_in_time_and_are_rebuilt_from_history_at_start(
    ledger: Ledger, clock: Clock
) -> None:
    guard = guard_on(ledger, clock)
    first = prefs("alice", NOW - 3 * S, "alice", ALICE)
    second = prefs("alice", NOW - 2 * S, "alice", ALICE)
    assert guard.admit_preferences(*first, history=False).apply
    assert guard.admit_preferences(*second, history=False).apply
    with pytest.raises(Unauthenticated, match="replayed or out of order"):
        guard.admit_preferences(*first, history=False)
    # Next start, hours later: the topic is read again; the last applied one rebuilds the state.
    clock.now_ns += 3600 * S
    restarted = guard_on(ledger, clock)
    assert not restarted.admit_preferences(*first, history=True).apply
    assert restarted.admit_preferences(*second, history=True).apply
    # A message never applied before the restart and now stale is refused, history or not.
    with pytest.raises(Unauthenticated, match="beyond max_message_age_ms"):
        restarted.admit_preferences(*prefs("alice", NOW - S, "alice", ALICE), history=True)
