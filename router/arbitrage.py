"""Arbitrage requests: buy on one venue and sell on another at once, and the honest result.

Both legs are IOC orders sent concurrently, each with a protective limit price.
When one leg fills more than the other, the difference is an unhedged
position (the residual): `router.residuals` and `router.residual_worker` record
it and work it until flat (or report it, `residual_policy = "report"`); the
result says exactly what is hedged, what was done and what remains.

Before planning, the quantity is sized down to what both venues can fund (the
buy venue's quote balance, the sell venue's base balance, `router.funding`),
rounded down onto the books' size step; the smaller size must still pay after
fees. When a venue can fund nothing the request is `insufficient_balance`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from connectors.types import BPS, Mode, Side, decimal_text
from router.errors import RouterError
from router.execution import Fill, LegOutcome, OrderLeg, leg_limit
from router.funding import LegTerms, Shortfall, fund
from router.precision import money_down, publish_price
from router.request import ArbitrageRequest
from router.results import ExecutionResult, Status, quote_fee
from router.risk import PlannedLeg
from router.routing import NoRoute, RoutePlan, RouteRequest, VenueView, plan_route

BUY_LEG, SELL_LEG = 0, 1


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
class ArbitrageOutcome:
    """What an executed arbitrage did: its two legs and, if they filled unequally, its residual."""

    request_id: str
    user_id: str
    symbol: str
    quantity: Decimal  # requested
    buy: LegOutcome
    sell: LegOutcome
    residual: dict[str, object] | None = None  # the result's `residual` report
    attempts: tuple[LegOutcome, ...] = ()  # the legs sent to flatten the residual so far


def settle_arbitrage(
    outcome: ArbitrageOutcome,
    route: dict[str, object] | None,
    *,
    mode: Mode,
    received_ns: int,
    completed_ns: int,
    note: str = "",
) -> ExecutionResult:
    """Build the result: `filled` only when both legs filled the requested quantity.

    Otherwise `partially_filled` when some quantity was hedged (bought and sold), `failed` when
    none was; `filled_quantity` is the hedged quantity and `residual` says what was left unhedged.
    """
    buy_out, sell_out = outcome.buy, outcome.sell
    bought, sold = buy_out.filled, sell_out.filled
    fills = (*buy_out.fills, *sell_out.fills, *(f for a in outcome.attempts for f in a.fills))
    hedged = min(bought, sold)
    status: Status
    if bought == sold == outcome.quantity:
        status = "filled"
    else:
        status = "partially_filled" if hedged > 0 else "failed"
    problems = "; ".join(o.error for o in (buy_out, sell_out) if o.error)
    message = f"bought {decimal_text(bought)} on {buy_out.leg.venue}, sold {decimal_text(sold)} on "
    message += sell_out.leg.venue + (f": {problems}" if problems else "") + note
    return ExecutionResult(
        request_id=outcome.request_id,
        user_id=outcome.user_id,
        kind="arbitrage",
        mode=mode,
        status=status,
        reject_code=None,
        message=message,
        received_ns=received_ns,
        completed_ns=completed_ns,
        fills=fills,
        route=route,
        residual=outcome.residual,
        hedged_quantity=hedged,
        symbol=outcome.symbol,
        extra={"arbitrage": _economics(outcome.symbol, buy_out, sell_out, fills)},
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
