"""Risk checks before anything executes, and the kill switch that stops executions.

`RiskGate.check` runs on the planned legs of one order, in this order:

1. order notional (Σ quantity × price) against the global limit and the
   user's, whichever is smaller — the rejection names the one that bound;
2. net positions (`router.positions`: per asset, summed across venues, from
   fills): an order whose legs would take an asset's |total net| past its
   `max_position.<ASSET>` is refused, naming the asset, the position now, after
   and the limit; then the gross exposure (Σ over assets other than the valuation
   currency of |total net| × price) must not pass `max_gross_exposure`. Only a
   position the order grows is checked: an order that shrinks one (or the gross
   exposure) always passes, even above its limit. An order is checked on its
   planned prices, fees left out; an asset with no price at all, neither fresh,
   last known nor the order's own, cannot grow;
3. accepted orders in the sliding second before now.

After every fill, `RiskGate` applies it to the positions and runs its loss guard
(`router.loss`: the daily loss limit).

`KillSwitch` holds the `halt`/`resume` state of `smartroute.control` (and the
CLI). It is persisted in the ledger flag "halted" before `resume` takes
effect and right after `halt` does, so a halt survives restarts and a failed
write never lifts one; listeners registered with `on_resume` run after a resume.
An unreadable stored state counts as halted.
All arithmetic is exact Decimal.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext
from types import MappingProxyType
from typing import ClassVar, Final, Literal, Protocol

import orjson
import structlog

from connectors.types import Side, decimal_text
from router.errors import RouterError
from router.execution import Fill
from router.ledger import Ledger
from router.positions import PositionBook, fill_flows, split_symbol

__all__ = [
    "HALT_FLAG",
    "FillWatch",
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
    """An order that breaks a risk limit; `limit` names it (e.g. `max_position.BTC`)."""

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
    """The global limits: notional and gross exposure in the valuation currency, positions in each asset."""

    max_order_notional: Decimal
    max_orders_per_second: int
    max_gross_exposure: Decimal
    max_position: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        _check_amount("max_order_notional", self.max_order_notional)
        _check_amount("max_gross_exposure", self.max_gross_exposure)
        for asset, limit in self.max_position.items():
            _check_amount(f"max_position.{asset}", limit)
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


class FillWatch(Protocol):
    """What runs after fills are applied to the positions (the daily loss limit, `router.loss`)."""

    def after_fills(self) -> None:
        """Look at the positions and PnL the fills just changed."""
        ...


class RiskGate:
    """Check planned orders against the risk limits; keep the net positions the fills make."""

    def __init__(
        self,
        limits: RiskLimits,
        *,
        positions: PositionBook | None = None,
        loss_guard: FillWatch | None = None,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """Gate orders by `limits` over `positions`; `clock_ns` (monotonic) times the rate window.

        `loss_guard` runs after every fill (and once after a rebuild from the ledger).
        """
        self.limits = limits
        self.positions = PositionBook() if positions is None else positions
        self.loss_guard = loss_guard
        self._clock_ns = clock_ns
        self._accepted_ns: deque[int] = deque()

    def check(self, legs: Sequence[PlannedLeg], *, user_max_order_notional: Decimal | None) -> None:
        """Raise RiskRejected if the order breaks a limit; otherwise count it as accepted now."""
        if not legs:
            raise ValueError("an order to check needs at least one leg")
        if user_max_order_notional is not None:
            _check_amount("user_max_order_notional", user_max_order_notional)
        with localcontext(_EXACT):
            self._check_notional(legs, user_max_order_notional)
            self._check_positions(legs)
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

    def _check_positions(self, legs: Sequence[PlannedLeg]) -> None:
        """Refuse an order that grows a total net position past its limit, or the gross exposure past its."""
        deltas: dict[str, Decimal] = {}
        for leg in legs:
            for asset, delta in fill_flows(leg.symbol, leg.side, leg.quantity, leg.price):
                deltas[asset] = deltas.get(asset, Decimal(0)) + delta
        current = {asset: self.positions.net(asset) for asset in deltas}
        after = {asset: current[asset] + delta for asset, delta in deltas.items()}
        what = _describe(legs)
        for asset in sorted(deltas):
            limit = self.limits.max_position.get(asset)
            if limit is None or abs(after[asset]) <= abs(current[asset]):
                continue  # reducing a position never adds risk, even above the limit
            if abs(after[asset]) > limit:
                raise RiskRejected(
                    f"max_position.{asset}",
                    f"{what} would take the net {asset} position from {decimal_text(current[asset])} to "
                    f"{decimal_text(after[asset])}, past max_position.{asset} {decimal_text(limit)}",
                )
        self._check_gross(legs, current, after, what)

    def _check_gross(
        self, legs: Sequence[PlannedLeg], current: dict[str, Decimal], after: dict[str, Decimal], what: str
    ) -> None:
        book, currency = self.positions, self.positions.currency
        growing = [a for a in sorted(after) if a != currency and abs(after[a]) > abs(current[a])]
        if not growing:
            return  # an order that grows no position never adds to the gross exposure
        # An asset with no price yet is valued at the order's own price when it is quoted in the currency.
        leg_prices = {
            split_symbol(leg.symbol)[0]: leg.price for leg in legs if leg.symbol.endswith(f"-{currency}")
        }
        unpriced = [a for a in growing if book.price(a) is None and a not in leg_prices]
        if unpriced:
            raise RiskRejected(
                "max_gross_exposure",
                f"{what} would grow the {unpriced[0]} position, which has no price in {currency}: "
                "its gross exposure cannot be checked",
            )
        gross_now, _ = book.gross_exposure()
        gross_after, _ = book.gross_exposure(after)
        for asset in (a for a in growing if book.price(a) is None):
            gross_after += abs(after[asset]) * leg_prices[asset]
        limit = self.limits.max_gross_exposure
        if gross_after > gross_now and gross_after > limit:
            raise RiskRejected(
                "max_gross_exposure",
                f"{what} would take the gross exposure from {decimal_text(gross_now)} to "
                f"{decimal_text(gross_after)} {currency}, past max_gross_exposure {decimal_text(limit)}",
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

    def record_fill(self, symbol: str, fill: Fill, *, watch: bool = True) -> None:
        """Apply a fill of `symbol` to the positions; then run the loss guard unless `watch` is false."""
        _check_side(fill.side)
        _check_amount("quantity", fill.quantity)
        _check_amount("price", fill.price)
        self.positions.apply(symbol, fill)
        if watch and self.loss_guard is not None:
            self.loss_guard.after_fills()

    def restored(self) -> None:
        """Run the loss guard once over positions rebuilt from the ledger."""
        if self.loss_guard is not None:
            self.loss_guard.after_fills()


def _describe(legs: Sequence[PlannedLeg]) -> str:
    """Return 'buy 1 BTC-USDT' for an order, 'buy 1 BTC-USDT on okx and sell …' for legs that differ."""
    first = legs[0]
    if all((leg.side, leg.symbol) == (first.side, first.symbol) for leg in legs):
        with localcontext(_EXACT):
            total = sum((leg.quantity for leg in legs), Decimal(0))
        return f"{first.side} {decimal_text(total)} {first.symbol}"
    return " and ".join(
        f"{leg.side} {decimal_text(leg.quantity)} {leg.symbol} on {leg.venue}" for leg in legs
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
