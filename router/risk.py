"""Risk checks before anything executes, and the kill switch that stops executions.

`RiskGate.check` runs on the planned legs of one order, in this order:

1. order notional (Σ quantity × price) against the global limit and the
   user's, whichever is smaller — the rejection names the one that bound;
2. per-venue exposure (Σ over symbols |net base position| × last fill price):
   a leg that grows its venue's position must not take that venue's exposure,
   valued at the leg's price, above the limit; a leg that shrinks it always passes;
3. accepted orders in the sliding second before now.

`KillSwitch` holds the `halt`/`resume` state of `smartroute.control` (and the
CLI). It is persisted in the ledger flag "halted" before `resume` takes
effect and right after `halt` does, so a halt survives restarts and a failed
write never lifts one. An unreadable stored state counts as halted.
All arithmetic is exact Decimal.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext
from typing import ClassVar, Final, Literal

import orjson
import structlog

from connectors.types import Side, decimal_text
from router.errors import RouterError
from router.ledger import Ledger

__all__ = [
    "HALT_FLAG",
    "InvalidControl",
    "KillSwitch",
    "PlannedLeg",
    "RiskGate",
    "RiskLimits",
    "RiskRejected",
]


HALT_FLAG: Final = "halted"
MAX_REASON_CHARS: Final = 256
MAX_ISSUED_BY_CHARS: Final = 64
MAX_CONTROL_BYTES: Final = 4096
CONTROL_FIELDS: Final = frozenset({"v", "command", "reason", "issued_by", "issued_ns"})
_WINDOW_NS: Final = 1_000_000_000
# Amounts are bounded (≤ 40 digits, magnitude 1e-40..1e40), so 400 digits hold every sum of
# products exactly; Inexact is trapped so a result can never be silently rounded.
_AMOUNT_DIGITS: Final = 40
_EXACT: Final = Context(prec=400, traps=[Inexact, InvalidOperation, Overflow, DivisionByZero])

log = structlog.get_logger(__name__)


class RiskRejected(RouterError):
    """An order that breaks a risk limit; `limit` names it, `venue` is set for exposure."""

    reject_code: ClassVar[str] = "risk_limit"

    def __init__(self, limit: str, message: str, *, venue: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.message = message
        self.venue = venue


class InvalidControl(RouterError):
    """A control message (or halt/resume call) that cannot be applied; `field` names the defect."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _check_amount(name: str, value: object) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be a finite Decimal > 0, got {value!r}")
    if len(value.as_tuple().digits) > _AMOUNT_DIGITS or not -_AMOUNT_DIGITS <= value.adjusted() <= 40:
        raise ValueError(f"{name} must have at most 40 digits and magnitude 1e-40..1e40, got {value!r}")


def _check_side(side: object) -> None:
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The global limits, in quote currency (notional, exposure) and orders per second."""

    max_order_notional: Decimal
    max_orders_per_second: int
    max_venue_exposure: Decimal

    def __post_init__(self) -> None:
        _check_amount("max_order_notional", self.max_order_notional)
        _check_amount("max_venue_exposure", self.max_venue_exposure)
        rate = self.max_orders_per_second
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
            raise ValueError(f"max_orders_per_second must be an integer ≥ 1, got {rate!r}")


@dataclass(frozen=True, slots=True)
class PlannedLeg:
    """One leg the router intends to execute: base `quantity` at an expected `price` (quote per base)."""

    venue: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal

    def __post_init__(self) -> None:
        if not self.venue or not self.symbol:
            raise ValueError(f"venue and symbol must be non-empty, got {self.venue!r}, {self.symbol!r}")
        _check_side(self.side)
        _check_amount("quantity", self.quantity)
        _check_amount("price", self.price)


# (venue, symbol) → (net base position, last fill price)
_Positions = dict[tuple[str, str], tuple[Decimal, Decimal]]


class RiskGate:
    """Check planned orders against the risk limits and track per-venue exposure from fills."""

    def __init__(self, limits: RiskLimits, *, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        """Gate orders by `limits`; `clock_ns` (monotonic) times the orders-per-second window."""
        self.limits = limits
        self._clock_ns = clock_ns
        self._accepted_ns: deque[int] = deque()
        self._positions: _Positions = {}

    def check(self, legs: Sequence[PlannedLeg], *, user_max_order_notional: Decimal | None) -> None:
        """Raise RiskRejected if the order breaks a limit; otherwise count it as accepted now."""
        if not legs:
            raise ValueError("an order to check needs at least one leg")
        if user_max_order_notional is not None:
            _check_amount("user_max_order_notional", user_max_order_notional)
        with localcontext(_EXACT):
            self._check_notional(legs, user_max_order_notional)
            self._check_exposure(legs)
        now_ns = self._clock_ns()
        self._check_rate(now_ns)
        self._accepted_ns.append(now_ns)

    def _check_notional(self, legs: Sequence[PlannedLeg], user_max: Decimal | None) -> None:
        notional = sum((leg.quantity * leg.price for leg in legs), Decimal(0))
        limit, name, whose = self.limits.max_order_notional, "max_order_notional", "global limit"
        if user_max is not None and user_max < limit:
            limit, name, whose = user_max, "user_max_order_notional", "the user's limit"
        if notional > limit:
            raise RiskRejected(
                name,
                f"order notional {decimal_text(notional)} is above {name} {decimal_text(limit)} ({whose})",
            )

    def _check_exposure(self, legs: Sequence[PlannedLeg]) -> None:
        limit = self.limits.max_venue_exposure
        proposed: _Positions = {}
        for leg in legs:
            key = (leg.venue, leg.symbol)
            net = proposed.get(key, self._positions.get(key, (Decimal(0), leg.price)))[0]
            new_net = net + leg.quantity if leg.side == "buy" else net - leg.quantity
            proposed[key] = (new_net, leg.price)
            if abs(new_net) <= abs(net):
                continue  # reducing a position never adds risk, even above the limit
            exposure = _venue_exposure(leg.venue, {**self._positions, **proposed})
            if exposure > limit:
                raise RiskRejected(
                    "max_venue_exposure",
                    f"{leg.side} {decimal_text(leg.quantity)} {leg.symbol} on {leg.venue} would take "
                    f"{leg.venue} exposure to {decimal_text(exposure)}, above max_venue_exposure "
                    f"{decimal_text(limit)}",
                    venue=leg.venue,
                )

    def _check_rate(self, now_ns: int) -> None:
        while self._accepted_ns and self._accepted_ns[0] <= now_ns - _WINDOW_NS:
            self._accepted_ns.popleft()
        limit = self.limits.max_orders_per_second
        if len(self._accepted_ns) >= limit:
            raise RiskRejected(
                "max_orders_per_second",
                f"{len(self._accepted_ns)} orders accepted in the last second reach max_orders_per_second "
                f"{limit}",
            )

    def record_fill(self, venue: str, symbol: str, side: str, quantity: Decimal, price: Decimal) -> None:
        """Apply a fill to the venue's net position in `symbol`; `price` becomes its last price."""
        _check_side(side)
        _check_amount("quantity", quantity)
        _check_amount("price", price)
        key = (venue, symbol)
        with localcontext(_EXACT):
            net = self._positions.get(key, (Decimal(0), price))[0]
            self._positions[key] = (net + quantity if side == "buy" else net - quantity, price)

    def exposure(self, venue: str) -> Decimal:
        """Return Σ over symbols of |net base position| × last fill price on `venue`, in quote currency."""
        with localcontext(_EXACT):
            return _venue_exposure(venue, self._positions)

    def snapshot(self) -> dict[str, str]:
        """Return each venue with fills → its exposure as decimal text (for /status)."""
        venues = sorted({venue for venue, _ in self._positions})
        return {venue: decimal_text(self.exposure(venue)) for venue in venues}


def _venue_exposure(venue: str, positions: _Positions) -> Decimal:
    return sum(
        (abs(net) * price for (where, _), (net, price) in positions.items() if where == venue), Decimal(0)
    )


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
