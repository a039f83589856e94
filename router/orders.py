"""Order requests: the route and legs of a market or limit order, and the result of its legs.

Pure functions of their inputs: the router supplies the preferences, the
venues' views and the legs' outcomes, and sends the legs itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from connectors.types import Mode, decimal_text
from router.execution import LegOutcome, OrderLeg, leg_limit
from router.preferences import UserPreferences
from router.request import OrderRequest
from router.results import ExecutionResult, fill_status
from router.risk import PlannedLeg
from router.routing import RoutePlan, RouteRequest, VenueView, plan_route


@dataclass(frozen=True, slots=True)
class OrderPlan:
    """The route chosen for an order and the IOC legs that execute it."""

    route: RoutePlan
    legs: tuple[OrderLeg, ...]

    def planned_legs(self) -> list[PlannedLeg]:
        """Return the legs as the risk gate sees them."""
        return [
            PlannedLeg(g.venue, g.symbol, g.side, g.quantity, r.expected_price)
            for g, r in zip(self.legs, self.route.legs, strict=True)
        ]


def plan_order(
    request: OrderRequest, prefs: UserPreferences, views: Sequence[VenueView], max_quote_age_ms: float
) -> OrderPlan:
    """Route the order under the user's preferences; raise `NoRoute` when no venue can take it."""
    slippage = request.max_slippage_bps if request.max_slippage_bps is not None else prefs.max_slippage_bps
    route_request = RouteRequest(
        symbol=request.symbol,
        side=request.side,
        quantity=request.quantity,
        limit_price=request.limit_price,
        max_slippage_bps=slippage,
        strategy=prefs.strategy,
        max_quote_age_ms=max_quote_age_ms,
        allowed_venues=frozenset(request.venues) if request.venues else None,
        excluded_venues=prefs.excluded_venues,
        preferred_venues=prefs.preferred_venues,
        preferred_bias_bps=prefs.preferred_bias_bps,
        max_venues=prefs.max_venues if prefs.strategy == "split" else 1,
    )
    route = plan_route(route_request, views)
    quotes = {view.venue: view.quote for view in views}
    legs = tuple(
        OrderLeg(
            request.request_id,
            i,
            leg.venue,
            request.symbol,
            request.side,
            leg.quantity,
            leg_limit(quotes.get(leg.venue), leg.quantity, request.side, slippage, request.limit_price),
        )
        for i, leg in enumerate(route.legs)
    )
    return OrderPlan(route, legs)


def order_result(
    request: OrderRequest,
    route: RoutePlan,
    outcomes: Sequence[LegOutcome],
    *,
    mode: Mode,
    received_ns: int,
    completed_ns: int,
) -> ExecutionResult:
    """Build the result of an order's executed legs."""
    fills = tuple(f for o in outcomes for f in o.fills)
    filled = sum((f.quantity for f in fills), Decimal(0))
    status = fill_status(request.quantity, filled)
    problems = "; ".join(o.error for o in outcomes if o.error)
    done, wanted = decimal_text(filled), decimal_text(request.quantity)
    message = {
        "filled": f"filled {done} {request.symbol} on {len(route.legs)} venue(s): {route.reason}",
        "partially_filled": f"filled {done} of {wanted}: {problems}",
        "failed": f"nothing filled: {problems}",
    }[status]
    return ExecutionResult(
        request_id=request.request_id,
        user_id=request.user_id,
        kind=request.kind,
        mode=mode,
        status=status,
        reject_code=None,
        message=message,
        received_ns=received_ns,
        completed_ns=completed_ns,
        fills=fills,
        route=route.as_message(),
        symbol=request.symbol,
    )
