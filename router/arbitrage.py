"""Arbitrage requests: buy on one venue and sell on another at once, then deal with any residual.

Both legs are IOC orders sent concurrently, each with a protective limit price.
When one leg fills more than the other, the difference is an unhedged
position (the residual): the router either unwinds it on the venue that
over-filled (`residual_policy = "unwind"`) or leaves it and reports it
(`"report"`). Either way the result says exactly what is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from connectors.types import decimal_text
from router.book_walk import BPS
from router.errors import RouterError
from router.execution import LegOutcome, OrderLeg, all_refused, leg_limit, protective_limit
from router.precision import money_down, publish_price
from router.request import OrderRequest, Side
from router.results import ExecutionResult, Status, quote_fee
from router.risk import PlannedLeg
from router.routing import NoRoute, RoutePlan, RouteRequest, VenueView, plan_route

if TYPE_CHECKING:
    from router.smart import SmartRouter

BUY_LEG, SELL_LEG, UNWIND_LEG = 0, 1, 2


class NoArbitrage(RouterError):
    """The arbitrage cannot be executed as asked; `reject_code` and `route` go into the result."""

    def __init__(self, reject_code: str, message: str, route: dict[str, object]) -> None:
        super().__init__(message)
        self.reject_code = reject_code
        self.message = message
        self.route = route


@dataclass(frozen=True, slots=True)
class ArbitragePlan:
    """The two legs to send, with the economics expected from the books now."""

    legs: tuple[OrderLeg, OrderLeg]
    buy_price: Decimal
    sell_price: Decimal
    expected_net_profit: Decimal
    slippage_bps: Decimal
    route: dict[str, object]

    def planned_legs(self) -> list[PlannedLeg]:
        """Return the legs as the risk gate sees them."""
        buy, sell = self.legs
        return [
            PlannedLeg(buy.venue, buy.symbol, "buy", buy.quantity, self.buy_price),
            PlannedLeg(sell.venue, sell.symbol, "sell", sell.quantity, self.sell_price),
        ]


def plan_arbitrage(
    request: OrderRequest, views: Mapping[str, VenueView], slippage_bps: Decimal, max_quote_age_ms: float
) -> ArbitragePlan:
    """Plan both legs on their named venues; refuse when either book cannot take it or it no longer pays."""
    assert request.buy_venue is not None and request.sell_venue is not None
    buy = _side_plan(request, "buy", request.buy_venue, views, slippage_bps, max_quote_age_ms)
    sell = _side_plan(request, "sell", request.sell_venue, views, slippage_bps, max_quote_age_ms)
    fee_buy = views[request.buy_venue].taker_fee_bps / BPS
    fee_sell = views[request.sell_venue].taker_fee_bps / BPS
    net = request.quantity * (sell.expected_price * (1 - fee_sell) - buy.expected_price * (1 + fee_buy))
    route = _route(buy, sell, net)
    if net <= 0:
        raise NoArbitrage(
            "no_opportunity",
            f"buying {decimal_text(request.quantity)} {request.symbol} on {request.buy_venue} at "
            f"{decimal_text(buy.legs[0].published_price())} and selling on {request.sell_venue} at "
            f"{decimal_text(sell.legs[0].published_price())} would net {decimal_text(money_down(net))} "
            "after fees; "
            "nothing was executed",
            route,
        )
    legs = (
        OrderLeg(
            request.request_id,
            BUY_LEG,
            request.buy_venue,
            request.symbol,
            "buy",
            request.quantity,
            leg_limit(views[request.buy_venue].quote, request.quantity, "buy", slippage_bps, None),
        ),
        OrderLeg(
            request.request_id,
            SELL_LEG,
            request.sell_venue,
            request.symbol,
            "sell",
            request.quantity,
            leg_limit(views[request.sell_venue].quote, request.quantity, "sell", slippage_bps, None),
        ),
    )
    return ArbitragePlan(legs, buy.expected_price, sell.expected_price, net, slippage_bps, route)


def _side_plan(
    request: OrderRequest,
    side: Side,
    venue: str,
    views: Mapping[str, VenueView],
    slippage_bps: Decimal,
    max_quote_age_ms: float,
) -> RoutePlan:
    view = views.get(venue)
    if view is None:
        raise NoArbitrage("unknown_venue", f"{venue} is not an enabled venue", _empty_route(venue))
    route_request = RouteRequest(
        symbol=request.symbol,
        side=side,
        quantity=request.quantity,
        limit_price=None,
        max_slippage_bps=slippage_bps,
        strategy="best_price",
        max_quote_age_ms=max_quote_age_ms,
        allowed_venues=frozenset({venue}),
    )
    try:
        return plan_route(route_request, [view])
    except NoRoute as exc:
        raise NoArbitrage(exc.reject_code, f"{side} leg on {venue}: {exc.message}", exc.as_message()) from exc


def _route(buy: RoutePlan, sell: RoutePlan, net: Decimal) -> dict[str, object]:
    legs = [*buy.as_message()["legs"], *sell.as_message()["legs"]]  # type: ignore[misc]
    considered = [*buy.as_message()["considered"], *sell.as_message()["considered"]]  # type: ignore[misc]
    return {
        "strategy": "arbitrage",
        "legs": legs,
        "considered": considered,
        "reason": f"expected net {decimal_text(money_down(net))} after both taker fees",
    }


def _empty_route(venue: str) -> dict[str, object]:
    return {"strategy": "arbitrage", "legs": [], "considered": [], "reason": f"{venue} is not enabled"}


async def settle_arbitrage(
    router: SmartRouter,
    request: OrderRequest,
    plan: ArbitragePlan,
    outcomes: Sequence[LegOutcome],
    received_ns: int,
) -> ExecutionResult:
    """Build the result of both legs, unwinding or reporting any unhedged quantity."""
    buy_out, sell_out = outcomes
    if refused := all_refused(outcomes):
        message = "; ".join(o.error or "refused" for o in outcomes) + "; nothing was executed"
        return router.reject(request, refused, message, received_ns, plan.route)
    bought, sold = buy_out.filled, sell_out.filled
    residual, unwind = await _residual(router, request, bought - sold, plan.slippage_bps)
    fills = (*buy_out.fills, *sell_out.fills, *(unwind.fills if unwind else ()))
    hedged = min(bought, sold)
    status: Status
    if hedged == request.quantity and residual is None:
        status = "filled"
    elif bought > 0 or sold > 0:
        status = "partially_filled"
    else:
        status = "failed"
    fees = sum((fee for f in fills if (fee := quote_fee(f, request.symbol)) is not None), Decimal(0))
    flows = sum((f.price * f.quantity * (1 if f.side == "sell" else -1) for f in fills), Decimal(0)) - fees
    problems = "; ".join(o.error for o in outcomes if o.error)
    message = f"bought {decimal_text(bought)} on {buy_out.leg.venue}, sold {decimal_text(sold)} on "
    message += sell_out.leg.venue + (f": {problems}" if problems else "")
    return ExecutionResult(
        request_id=request.request_id,
        user_id=request.user_id,
        kind="arbitrage",
        mode=router.executor.mode,
        status=status,
        reject_code=None,
        message=message,
        received_ns=received_ns,
        completed_ns=router.clock_ns(),
        fills=fills,
        route=plan.route,
        residual=residual,
        hedged_quantity=hedged,
        symbol=request.symbol,
        extra={
            "arbitrage": {
                "buy_venue": buy_out.leg.venue,
                "sell_venue": sell_out.leg.venue,
                "bought": decimal_text(bought),
                "sold": decimal_text(sold),
                "buy_avg_price": _vwap(buy_out),
                "sell_avg_price": _vwap(sell_out),
                "net_cash_flow": decimal_text(money_down(flows)),
            }
        },
    )


async def _residual(
    router: SmartRouter, request: OrderRequest, excess: Decimal, slippage_bps: Decimal
) -> tuple[dict[str, object] | None, LegOutcome | None]:
    """Handle bought − sold: positive means long on the buy venue, negative short on the sell venue."""
    if excess == 0:
        return None, None
    assert request.buy_venue is not None and request.sell_venue is not None
    long = excess > 0
    venue = request.buy_venue if long else request.sell_venue
    quantity = abs(excess)
    residual: dict[str, object] = {
        "quantity": decimal_text(quantity),
        "venue": venue,
        "exposure": "long" if long else "short",
    }
    if router.residual_policy == "report":
        residual |= {"action": "left", "remaining_quantity": decimal_text(quantity)}
        return residual, None
    side: Side = "sell" if long else "buy"
    top = router.cache.fresh(request.symbol).get(venue)
    if top is None:
        residual |= {"action": "unwind_failed", "remaining_quantity": decimal_text(quantity)}
        residual["message"] = f"no fresh {venue} quote to unwind against"
        return residual, None
    price = top.quote.bid if long else top.quote.ask
    leg = OrderLeg(
        request.request_id,
        UNWIND_LEG,
        venue,
        request.symbol,
        side,
        quantity,
        protective_limit(price, side, slippage_bps, None),
    )
    [outcome] = await router.run_legs([leg])
    remaining = quantity - outcome.filled
    action = "unwound" if remaining == 0 else ("partially_unwound" if outcome.filled > 0 else "unwind_failed")
    residual |= {
        "action": action,
        "unwound_quantity": decimal_text(outcome.filled),
        "remaining_quantity": decimal_text(remaining),
    }
    if outcome.error:
        residual["message"] = outcome.error
    return residual, outcome


def _vwap(outcome: LegOutcome) -> str | None:
    filled = outcome.filled
    if filled == 0:
        return None
    vwap = sum((f.price * f.quantity for f in outcome.fills), Decimal(0)) / filled
    return decimal_text(publish_price(vwap, (f.price for f in outcome.fills), outcome.leg.side))
