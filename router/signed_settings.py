"""Signed control and preferences messages: who sent them, and that they are fresh and never replayed.

With signatures required (`[security] require_signatures`), a control message
(`halt`/`resume`) must be signed by an operator, and a preferences message by
its user or by an operator (`router.signatures`). Each carries `issued_ns`
(wall clock, ns), and one is applied only if it is

- newer than the last message applied for the same principal (control: the
  operator; preferences: the user whose preferences change), and
- within `max_message_age_ms` of now, and
- for a `resume`, newer than the halt it lifts.

So an old signed `resume` replayed after a halt never resumes trading, and an
old preferences message never overrides a newer one. A message that arrives
while the router runs and is not newer than the last one applied is a replay:
refused like an unsigned one.

The last applied `issued_ns` per principal is kept in the ledger, because the
control and preferences topics are read again from their first offset at
every start; what was already in a topic then (`history`) is judged against it:

- control: the kill switch's state is itself persisted, so a historical
  message at or below the recorded `issued_ns` is skipped as already applied;
  a control message is applied first and recorded after (a crash in between
  re-applies it, which is idempotent, or finds it too old — its effect stored);
- preferences live only in memory, so the historical message whose
  `issued_ns` equals the recorded one is applied again to rebuild them, older
  ones are skipped, and a message is recorded before it is applied (a crash in
  between rebuilds it at start).

A tombstone (a record without a value) cannot carry `issued_ns`, so with
signatures required it is refused: replace an override with new preferences
instead. Without signatures required nothing is checked or recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import orjson

from router.ledger import Ledger
from router.signatures import Headers, KeyRing, Unauthenticated, verify

__all__ = ["Admitted", "SettingsGuard"]

_CONTROL: Final = "signed:control:"
_PREFERENCES: Final = "signed:preferences:"
_HALT: Final = "signed:halt"


@dataclass(frozen=True, slots=True)
class Admitted:
    """The verdict on one control or preferences message that may be applied."""

    apply: bool  # False: already applied (or superseded); the state reflects it
    principal: str | None = None  # who signed it; None when signatures are not required
    issued_ns: int | None = None
    command: Literal["halt", "resume"] | None = None  # control only
    subject: str | None = None  # preferences: whose preferences


_UNCHECKED: Final = Admitted(apply=True)


class SettingsGuard:
    """Admit control and preferences messages by signature, freshness and order (see the module doc)."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        required: bool,
        users: KeyRing,
        operators: KeyRing,
        max_age_ms: int,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._ledger = ledger
        self.required = required
        self._users = users
        self._operators = operators
        self._max_age_ns = max_age_ms * 1_000_000
        self._clock_ns = clock_ns

    # ----- control ---------------------------------------------------------------------------

    def admit_control(self, value: bytes | None, headers: Headers, *, history: bool) -> Admitted:
        """Return whether to apply a control message; raise Unauthenticated if it must be refused.

        `history`: the message was already in the topic when the router started.
        """
        if not self.required:
            return _UNCHECKED
        if value is None:
            raise Unauthenticated("a control record without a value cannot be signed")
        operator = verify("control", value, headers, self._operators)
        document = _document(value, "control")
        command = document.get("command")
        if command not in ("halt", "resume"):
            raise Unauthenticated(
                f'command must be "halt" or "resume", got {str(command)[:40]!r}', signer=operator
            )
        if document.get("issued_by") != operator:
            raise Unauthenticated(
                f"issued_by {str(document.get('issued_by'))[:64]!r} is not the signer {operator!r}",
                signer=operator,
            )
        issued_ns = _issued_ns(document, operator)
        admitted = Admitted(True, operator, issued_ns, "halt" if command == "halt" else "resume")
        last = self._last(_CONTROL + operator)
        if issued_ns <= last:
            if history:
                return Admitted(False, operator, issued_ns, admitted.command)
            raise _replayed(issued_ns, last, operator)
        self._check_fresh(issued_ns, operator)
        halt_ns = self._last(_HALT)
        if admitted.command == "resume" and issued_ns <= halt_ns:
            raise Unauthenticated(
                f"a resume issued at {issued_ns} is not newer than the halt issued at {halt_ns}",
                signer=operator,
            )
        return admitted

    def control_applied(self, admitted: Admitted) -> None:
        """Record an applied control message (after the kill switch stored its effect)."""
        if admitted.principal is None or admitted.issued_ns is None:
            return
        self._record(_CONTROL + admitted.principal, admitted.issued_ns)
        if admitted.command == "halt" and admitted.issued_ns > self._last(_HALT):
            self._record(_HALT, admitted.issued_ns)

    # ----- preferences -----------------------------------------------------------------------

    def admit_preferences(
        self, key_user: str | None, value: bytes | None, headers: Headers, *, history: bool
    ) -> Admitted:
        """Return whether to apply a preferences record; raise Unauthenticated if it must be refused.

        An admitted message is recorded here, before it is applied (see the module doc).
        """
        if not self.required:
            return _UNCHECKED
        if value is None:
            raise Unauthenticated(
                "a tombstone cannot carry issued_ns, so it is refused while signatures are required; "
                "publish new preferences instead"
            )
        document = _document(value, "preferences")
        subject = document.get("user_id")
        if not isinstance(subject, str) or (key_user is not None and key_user != subject):
            raise Unauthenticated("the preferences name no user_id matching the record key")
        signer = self._preferences_signer(value, headers, subject)
        issued_ns = _issued_ns(document, signer)
        last = self._last(_PREFERENCES + subject)
        if issued_ns <= last and not history:
            raise _replayed(issued_ns, last, signer)
        if issued_ns < last:
            return Admitted(False, signer, issued_ns, subject=subject)
        if issued_ns > last:
            self._check_fresh(issued_ns, signer)
            self._record(_PREFERENCES + subject, issued_ns)
        return Admitted(True, signer, issued_ns, subject=subject)

    def _preferences_signer(self, value: bytes, headers: Headers, subject: str) -> str:
        try:
            return verify("preferences", value, headers, self._users_or_operators(subject))
        except Unauthenticated as exc:
            if exc.signer is not None and exc.signer != subject and not self._operators.of(exc.signer):
                raise Unauthenticated(
                    f"{exc.signer!r} may not change {subject!r}'s preferences: only that user or an operator",
                    signer=exc.signer,
                ) from None
            raise

    def _users_or_operators(self, subject: str) -> KeyRing:
        keys = dict(self._operators.keys)
        keys[subject] = self._users.of(subject) + self._operators.of(subject)
        return KeyRing(keys)

    # ----- shared ----------------------------------------------------------------------------

    def _check_fresh(self, issued_ns: int, signer: str) -> None:
        age_ns = self._clock_ns() - issued_ns
        if abs(age_ns) > self._max_age_ns:
            when = "old" if age_ns > 0 else "in the future"
            raise Unauthenticated(
                f"issued_ns is {abs(age_ns) / 1e6:.0f} ms {when}, beyond max_message_age_ms "
                f"{self._max_age_ns // 1_000_000}",
                signer=signer,
            )

    def _last(self, name: str) -> int:
        stored = self._ledger.get_flag(name)
        return 0 if stored is None else int(stored)

    def _record(self, name: str, issued_ns: int) -> None:
        self._ledger.set_flag(name, str(issued_ns).encode())


def _replayed(issued_ns: int, last: int, signer: str) -> Unauthenticated:
    return Unauthenticated(
        f"replayed or out of order: issued_ns {issued_ns} is not newer than the last applied ({last})",
        signer=signer,
    )


def _document(value: bytes, what: str) -> dict[str, object]:
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise Unauthenticated(f"the {what} message is not JSON") from None
    if not isinstance(document, dict):
        raise Unauthenticated(f"the {what} message is not a JSON object")
    return document


def _issued_ns(document: dict[str, object], signer: str) -> int:
    issued_ns = document.get("issued_ns")
    if type(issued_ns) is not int or issued_ns <= 0:
        raise Unauthenticated(
            f"issued_ns (wall clock, ns) is required as a positive integer while signatures are required, "
            f"got {str(issued_ns)[:40]!r}",
            signer=signer,
        )
    return issued_ns
