"""Risk checks before anything executes.

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

Orders execute concurrently: an accepted order checked with a `hold` counts
its planned position changes, at their worst, in every later check until its
legs settled (`release`), so orders in flight never pass a limit together.

After every fill, `RiskGate` applies it to the positions and runs its loss guard
(`router.loss`: the daily loss limit).

All arithmetic is exact Decimal; the kill switch lives in `router.kill_switch`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext
from types import MappingProxyType
from typing import ClassVar, Final, Protocol

from connectors.types import Side, decimal_text
from router.errors import RouterError
from router.execution import Fill
from router.positions import PositionBook, fill_flows, split_symbol

__all__ = [
    "FillWatch",
    "PlannedLeg",
    "RiskGate",
    "RiskLimits",
    "RiskRejected",
]


_WINDOW_NS: Final = 1_000_000_000
# Amounts are bounded (≤ 40 digits, magnitude 1e-40..1e40), so 400 digits hold every sum of
# products exactly; Inexact is trapped so a result can never be silently rounded.
_AMOUNT_DIGITS: Final = 40
_EXACT: Final = Context(prec=400, traps=[Inexact, InvalidOperation, Overflow, DivisionByZero])


class RiskRejected(RouterError):
    """An order that breaks a risk limit; `limit` names it (e.g. `max_position.BTC`)."""

    reject_code: ClassVar[str] = "risk_limit"

    def __init__(self, limit: str, message: str, *, venue: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.message = message
        self.venue = venue


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


_ZERO_DELTA: Final = Decimal(0)


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
        self.routers = 1  # routers sharing max_orders_per_second (a shared ledger counts them)
        self._in_flight: dict[str, dict[str, Decimal]] = {}  # hold → planned deltas per asset, not settled
        # Per asset the holds change: the sum of their rises, of their falls, and how many holds.
        self._held: dict[str, tuple[Decimal, Decimal, int]] = {}

    def check(
        self, legs: Sequence[PlannedLeg], *, user_max_order_notional: Decimal | None, hold: str | None = None
    ) -> None:
        """Raise RiskRejected if the order breaks a limit; otherwise count it as accepted now.

        With `hold`, the order's planned position changes count in every later check until
        `release(hold)`: orders executing at once never pass a position limit together.
        """
        if not legs:
            raise ValueError("an order to check needs at least one leg")
        if user_max_order_notional is not None:
            _check_amount("user_max_order_notional", user_max_order_notional)
        with localcontext(_EXACT):
            self._check_notional(legs, user_max_order_notional)
            deltas = self._check_positions(legs)
        now_ns = self._clock_ns()
        self._check_rate(now_ns)
        self._accepted_ns.append(now_ns)
        if hold is not None:
            self.release(hold)  # checked again under the same hold: the new deltas replace the old
            self._in_flight[hold] = deltas
            with localcontext(_EXACT):
                for asset, d in deltas.items():
                    up, down, holds = self._held.get(asset, (_ZERO_DELTA, _ZERO_DELTA, 0))
                    self._held[asset] = (up + d, down, holds + 1) if d > 0 else (up, down + d, holds + 1)

    def release(self, hold: str) -> None:
        """Stop counting a held order's planned changes: its legs settled (their fills are counted)."""
        deltas = self._in_flight.pop(hold, None)
        if deltas is None:
            return
        with localcontext(_EXACT):  # exact: the sums are those of the holds left, in value
            for asset, d in deltas.items():
                up, down, holds = self._held[asset]
                if holds == 1:
                    del self._held[asset]
                else:
                    self._held[asset] = (up - d, down, holds - 1) if d > 0 else (up, down - d, holds - 1)

    def _worst(self, asset: str, delta: Decimal = _ZERO_DELTA) -> Decimal:
        """Return the net of `asset` (+ `delta`) farthest from 0 the orders in flight may leave."""
        net = self.positions.net(asset) + delta
        up, down, _ = self._held.get(asset, (_ZERO_DELTA, _ZERO_DELTA, 0))
        return max(net + down, net + up, key=abs)

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

    def _check_positions(self, legs: Sequence[PlannedLeg]) -> dict[str, Decimal]:
        """Refuse an order that grows a total net position past its limit, or the gross exposure past its.

        Positions are taken at their worst: as the orders in flight (held) may leave them.
        Return the order's change of each asset's net position.
        """
        deltas: dict[str, Decimal] = {}
        for leg in legs:
            for asset, delta in fill_flows(leg.symbol, leg.side, leg.quantity, leg.price):
                deltas[asset] = deltas.get(asset, Decimal(0)) + delta
        current = {asset: self._worst(asset) for asset in deltas}
        after = {asset: self._worst(asset, delta) for asset, delta in deltas.items()}
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
        return deltas

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
        held = {asset: self._worst(asset) for asset in self._held}
        gross_now, _ = book.gross_exposure(held | current)
        gross_after, _ = book.gross_exposure(held | after)
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
        share = max(1, limit // self.routers)  # the desk's limit, split between the routers alive
        if len(self._accepted_ns) >= share:
            of = "" if share == limit else f", this router's share ({self.routers} routers alive) of {limit}"
            raise RiskRejected(
                "max_orders_per_second",
                f"{len(self._accepted_ns)} orders accepted in the last second reach max_orders_per_second "
                f"{share}{of}",
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
