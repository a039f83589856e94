"""Arbitrage requests: buy on one venue and sell on another at once, then deal with any residual.

Both legs are IOC orders sent concurrently, each with a protective limit price.
When one leg fills more than the other, the difference is an unhedged
position (the residual): the router either unwinds it on the venue that
over-filled (`residual_policy = "unwind"`) or leaves it and reports it
(`"report"`). Either way the result says exactly what is left.

Before planning, the quantity is sized down to what both venues can fund (the
buy venue's quote balance, the sell venue's base balance, `router.funding`),
rounded down onto the books' size step; the smaller size must still pay after
fees. When a venue can fund nothing the request is `insufficient_balance`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

from connectors.types import BPS, Mode, Quote, Side, decimal_text
from router.errors import RouterError
from router.execution import Fill, LegOutcome, OrderLeg, leg_limit, protective_limit
from router.funding import LegTerms, Shortfall, fund
from router.precision import money_down, publish_price
from router.request import ArbitrageRequest
from router.results import ExecutionResult, Status, quote_fee
from router.risk import PlannedLeg
from router.routing import NoRoute, RoutePlan, RouteRequest, VenueView, plan_route

BUY_LEG, SELL_LEG, UNWIND_LEG = 0, 1, 2

ResidualPolicy = Literal["unwind", "report"]


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
    request: ArbitrageRequest, views: Mapping[str, VenueView], slippage_bps: Decimal, max_quote_age_ms: float
) -> ArbitragePlan:
    """Plan both legs on their named venues; refuse when either book cannot take it or it no longer pays.

    The quantity is sized down to what both venues can fund (see the module docstring).
    """
    asked = request.quantity
    request, short = _funded(request, views, slippage_bps)
    buy = _side_plan(request, "buy", request.buy_venue, views, slippage_bps, max_quote_age_ms)
    sell = _side_plan(request, "sell", request.sell_venue, views, slippage_bps, max_quote_age_ms)
    fee_buy = views[request.buy_venue].taker_fee_bps / BPS
    fee_sell = views[request.sell_venue].taker_fee_bps / BPS
    net = request.quantity * (sell.expected_price * (1 - fee_sell) - buy.expected_price * (1 + fee_buy))
    route = _route(buy, sell, net)
    if short is not None:
        route["reason"] = (
            f"{route['reason']}; sized down from {decimal_text(asked)} to {decimal_text(request.quantity)}: "
            f"{short.venue} {short.text()}"
        )
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


def _funded(
    request: ArbitrageRequest, views: Mapping[str, VenueView], slippage_bps: Decimal
) -> tuple[ArbitrageRequest, Shortfall | None]:
    """Return the request sized down to what both venues can fund, and the venue that bound it."""
    quantity, binding = request.quantity, None
    sides: tuple[tuple[Side, str], ...] = (("buy", request.buy_venue), ("sell", request.sell_venue))
    for side, venue in sides:
        view = views.get(venue)
        if view is None or view.quote is None:
            continue  # planning the leg says why this venue cannot take it
        levels = view.quote.ask_levels() if side == "buy" else view.quote.bid_levels()
        available = view.available_quote if side == "buy" else view.available_base
        terms = LegTerms(side, view.taker_fee_bps, slippage_bps, None)
        fundable, short = fund(venue, request.symbol, terms, levels, request.quantity, available)
        if fundable is not None and short is not None and fundable < quantity:
            quantity, binding = fundable, short
    if binding is None:
        return request, None
    if quantity <= 0:
        raise NoArbitrage(
            "insufficient_balance",
            f"{binding.venue} cannot fund any of {_side_text(request, binding.venue)} "
            f"{decimal_text(request.quantity)} {request.symbol}: it {binding.text()}; nothing was executed",
            _empty_route(f"insufficient {binding.asset} on {binding.venue}"),
        )
    return replace(request, quantity=quantity), binding


def _side_text(request: ArbitrageRequest, venue: str) -> str:
    """Return "buying" or "selling": what the arbitrage does on `venue`."""
    return "buying" if venue == request.buy_venue else "selling"


def _side_plan(
    request: ArbitrageRequest,
    side: Side,
    venue: str,
    views: Mapping[str, VenueView],
    slippage_bps: Decimal,
    max_quote_age_ms: float,
) -> RoutePlan:
    view = views.get(venue)
    if view is None:
        raise NoArbitrage(
            "unknown_venue", f"{venue} is not an enabled venue", _empty_route(f"{venue} is not enabled")
        )
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


def _empty_route(reason: str) -> dict[str, object]:
    return {"strategy": "arbitrage", "legs": [], "considered": [], "reason": reason}


@dataclass(frozen=True, slots=True)
class Residual:
    """The unhedged quantity (bought − sold) as the result reports it, and the leg that unwinds it."""

    report: dict[str, object]
    unwind: OrderLeg | None


def plan_residual(
    request: ArbitrageRequest,
    outcomes: Sequence[LegOutcome],
    policy: ResidualPolicy,
    fresh_quotes: Mapping[str, Quote],
    slippage_bps: Decimal,
) -> Residual | None:
    """Decide what to do with bought − sold: positive is long on the buy venue, negative short on the sell."""
    buy_out, sell_out = outcomes
    excess = buy_out.filled - sell_out.filled
    if excess == 0:
        return None
    long = excess > 0
    venue = buy_out.leg.venue if long else sell_out.leg.venue
    quantity = abs(excess)
    report: dict[str, object] = {
        "quantity": decimal_text(quantity),
        "venue": venue,
        "exposure": "long" if long else "short",
    }
    if policy == "report":
        report |= {"action": "left", "remaining_quantity": decimal_text(quantity)}
        return Residual(report, None)
    quote = fresh_quotes.get(venue)
    if quote is None:
        report |= {"action": "unwind_failed", "remaining_quantity": decimal_text(quantity)}
        report["message"] = f"no fresh {venue} quote to unwind against"
        return Residual(report, None)
    side: Side = "sell" if long else "buy"
    price = quote.bid if long else quote.ask
    limit = protective_limit(price, side, slippage_bps, None)
    leg = OrderLeg(request.request_id, UNWIND_LEG, venue, request.symbol, side, quantity, limit)
    return Residual(report, leg)


def unwound(report: dict[str, object], quantity: Decimal, outcome: LegOutcome) -> dict[str, object]:
    """Return the residual's report once its unwind leg of `quantity` had `outcome`."""
    remaining = quantity - outcome.filled
    action = "unwound" if remaining == 0 else ("partially_unwound" if outcome.filled > 0 else "unwind_failed")
    report = report | {
        "action": action,
        "unwound_quantity": decimal_text(outcome.filled),
        "remaining_quantity": decimal_text(remaining),
    }
    if outcome.error:
        report["message"] = outcome.error
    return report


@dataclass(frozen=True, slots=True)
class Settled:
    """Both legs of an executed arbitrage, and what became of any residual."""

    outcomes: tuple[LegOutcome, LegOutcome]
    residual: dict[str, object] | None = None
    unwind: LegOutcome | None = None


def settle_arbitrage(
    request: ArbitrageRequest,
    plan: ArbitragePlan,
    settled: Settled,
    *,
    mode: Mode,
    received_ns: int,
    completed_ns: int,
) -> ExecutionResult:
    """Build the result of both legs and of the residual's unwind, if there was one."""
    buy_out, sell_out = settled.outcomes
    bought, sold = buy_out.filled, sell_out.filled
    unwind_fills = settled.unwind.fills if settled.unwind else ()
    fills = (*buy_out.fills, *sell_out.fills, *unwind_fills)
    hedged = min(bought, sold)
    status: Status
    if hedged == request.quantity and settled.residual is None:
        status = "filled"
    elif bought > 0 or sold > 0:
        status = "partially_filled"
    else:
        status = "failed"
    problems = "; ".join(o.error for o in settled.outcomes if o.error)
    message = f"bought {decimal_text(bought)} on {buy_out.leg.venue}, sold {decimal_text(sold)} on "
    message += sell_out.leg.venue + (f": {problems}" if problems else "")
    return ExecutionResult(
        request_id=request.request_id,
        user_id=request.user_id,
        kind="arbitrage",
        mode=mode,
        status=status,
        reject_code=None,
        message=message,
        received_ns=received_ns,
        completed_ns=completed_ns,
        fills=fills,
        route=plan.route,
        residual=settled.residual,
        hedged_quantity=hedged,
        symbol=request.symbol,
        extra={"arbitrage": _economics(request.symbol, buy_out, sell_out, fills)},
    )


def _economics(
    symbol: str, buy_out: LegOutcome, sell_out: LegOutcome, fills: Sequence[Fill]
) -> dict[str, object]:
    fees = sum((fee for f in fills if (fee := quote_fee(f, symbol)) is not None), Decimal(0))
    flows = sum((f.price * f.quantity * (1 if f.side == "sell" else -1) for f in fills), Decimal(0)) - fees
    return {
        "buy_venue": buy_out.leg.venue,
        "sell_venue": sell_out.leg.venue,
        "bought": decimal_text(buy_out.filled),
        "sold": decimal_text(sell_out.filled),
        "buy_avg_price": _vwap(buy_out),
        "sell_avg_price": _vwap(sell_out),
        "net_cash_flow": decimal_text(money_down(flows)),
    }


def _vwap(outcome: LegOutcome) -> str | None:
    filled = outcome.filled
    if filled == 0:
        return None
    vwap = sum((f.price * f.quantity for f in outcome.fills), Decimal(0)) / filled
    return decimal_text(publish_price(vwap, (f.price for f in outcome.fills), outcome.leg.side))
