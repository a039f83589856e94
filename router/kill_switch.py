"""The kill switch that stops executions, and the control messages that drive it.

`KillSwitch` holds the `halt`/`resume` state of `smartroute.control` (and the
CLI). It is persisted in the ledger flag "halted" before `resume` takes
effect and right after `halt` does, so a halt survives restarts and a failed
write never lifts one; listeners registered with `on_resume` run after a resume.
An unreadable stored state counts as halted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import orjson
import structlog

from router.errors import RouterError
from router.ledger import Ledger

__all__ = ["HALT_FLAG", "MAX_REASON_CHARS", "InvalidControl", "KillSwitch"]


HALT_FLAG: Final = "halted"
MAX_REASON_CHARS: Final = 256
MAX_ISSUED_BY_CHARS: Final = 64
MAX_CONTROL_BYTES: Final = 4096
CONTROL_FIELDS: Final = frozenset({"v", "command", "reason", "issued_by", "issued_ns"})

log = structlog.get_logger(__name__)


class InvalidControl(RouterError):
    """A control message (or halt/resume call) that cannot be applied; `field` names the defect."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class _Halt:
    reason: str
    issued_by: str
    since_ns: int

    def encode(self) -> bytes:
        return orjson.dumps(
            {"v": 1, "reason": self.reason, "issued_by": self.issued_by, "since_ns": self.since_ns}
        )


class KillSwitch:
    """Stop new executions on `halt` until `resume`; the state survives restarts via the ledger."""

    def __init__(self, ledger: Ledger, *, clock_ns: Callable[[], int] = time.time_ns) -> None:
        """Load the persisted state from `ledger`; `clock_ns` (wall clock) stamps `since_ns`."""
        self._ledger = ledger
        self._clock_ns = clock_ns
        self._halt = _load_halt(ledger.get_flag(HALT_FLAG), clock_ns)
        self._resume_listeners: list[Callable[[], None]] = []

    def on_resume(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every resume that lifts a halt (the loss guard's acknowledgement)."""
        self._resume_listeners.append(listener)

    @property
    def halted(self) -> bool:
        """Whether new executions are stopped."""
        return self._halt is not None

    @property
    def reason(self) -> str | None:
        """Why trading is halted, or None when it is not."""
        return None if self._halt is None else self._halt.reason

    @property
    def issued_by(self) -> str | None:
        """Who halted trading, or None when it is not halted."""
        return None if self._halt is None else self._halt.issued_by

    @property
    def since_ns(self) -> int | None:
        """When the halt began (ns since the epoch), or None when not halted."""
        return None if self._halt is None else self._halt.since_ns

    def apply(self, raw: bytes) -> bool:
        """Apply one Control message; return whether trading is now halted. Raise InvalidControl."""
        control = _decode_control(raw)
        log.info(
            "control_received", command=control.command, issued_by=control.issued_by, reason=control.reason
        )
        if control.command == "halt":
            self.halt(control.reason or "", control.issued_by)
        else:
            self.resume(control.issued_by)
        return self.halted

    def halt(self, reason: str, issued_by: str) -> None:
        """Stop new executions now; halting while halted keeps the first halt's reason and time."""
        _text("reason", reason, MAX_REASON_CHARS)
        _text("issued_by", issued_by, MAX_ISSUED_BY_CHARS)
        if self._halt is not None:
            log.info("halt_repeated", reason=reason, issued_by=issued_by, since_ns=self._halt.since_ns)
            return
        # In force before it is written: a failed write leaves trading halted, never running.
        self._halt = _Halt(reason, issued_by, self._clock_ns())
        self._ledger.set_flag(HALT_FLAG, self._halt.encode())
        log.warning("trading_halted", reason=reason, issued_by=issued_by, since_ns=self._halt.since_ns)

    def resume(self, issued_by: str) -> None:
        """Allow executions again; resuming while running is a no-op."""
        _text("issued_by", issued_by, MAX_ISSUED_BY_CHARS)
        if self._halt is None:
            return
        # Cleared on disk first: a failed write leaves trading halted.
        self._ledger.set_flag(HALT_FLAG, None)
        halt, self._halt = self._halt, None
        log.warning("trading_resumed", issued_by=issued_by, halted_by=halt.issued_by, since_ns=halt.since_ns)
        for listener in self._resume_listeners:
            listener()


def _load_halt(stored: bytes | None, clock_ns: Callable[[], int]) -> _Halt | None:
    if stored is None:
        return None
    try:
        document = orjson.loads(stored)
        halt = _Halt(document["reason"], document["issued_by"], document["since_ns"])
        if not all(
            isinstance(v, t) for v, t in ((halt.reason, str), (halt.issued_by, str), (halt.since_ns, int))
        ):
            raise TypeError("wrong field types")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        # Fail closed: a halt we cannot read is still a halt.
        log.error("halt_state_unreadable", error=str(exc))
        return _Halt("the stored halt state is unreadable", "smartroute", clock_ns())
    return halt


@dataclass(frozen=True, slots=True)
class _Control:
    command: Literal["halt", "resume"]
    issued_by: str
    reason: str | None  # required for halt, optional for resume


def _decode_control(raw: bytes) -> _Control:
    """Return the checked Control message in `raw`; raise InvalidControl naming the defect."""
    if len(raw) > MAX_CONTROL_BYTES:
        raise InvalidControl("value", f"control message is {len(raw)} bytes, over {MAX_CONTROL_BYTES}")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidControl("value", f"control message is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidControl("value", "control message must be a JSON object")
    unknown = sorted(document.keys() - CONTROL_FIELDS)
    if unknown:
        raise InvalidControl(unknown[0][:64], f"unknown field {unknown[0]!r:.60} in control message")
    version = document.get("v")
    if type(version) is not int or version != 1:
        raise InvalidControl("v", f"v must be the integer 1, got {version!r:.40}")
    command: Literal["halt", "resume"]
    if document.get("command") == "halt":
        command = "halt"
    elif document.get("command") == "resume":
        command = "resume"
    else:
        raise InvalidControl(
            "command", f'command must be "halt" or "resume", got {document.get("command")!r:.40}'
        )
    issued_by = _text("issued_by", document.get("issued_by"), MAX_ISSUED_BY_CHARS)
    issued_ns = document.get("issued_ns")
    if issued_ns is not None and (type(issued_ns) is not int or issued_ns <= 0):
        raise InvalidControl("issued_ns", f"issued_ns must be a positive integer (ns), got {issued_ns!r:.40}")
    reason = document.get("reason")
    if command == "halt" or reason is not None:
        reason = _text("reason", reason, MAX_REASON_CHARS)
    return _Control(command, issued_by, reason)


def _text(name: str, value: object, max_chars: int) -> str:
    """Return `value` if it is 1..max_chars printable characters; else raise InvalidControl."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars or not value.isprintable():
        raise InvalidControl(name, f"{name} must be 1..{max_chars} printable characters, got {value!r:.60}")
    return value
