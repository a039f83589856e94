"""SmartRouter: one order request in, exactly one execution and one result out.

The lifecycle of a request, whoever submits it (the Kafka service or the
Python API):

1. validate (`router.validation`); an invalid request is answered `rejected`;
2. claim its request_id in the durable ledger — a request already handled is
   answered with its stored result and never executed again;
3. refuse while halted; refuse an arbitrage whose `opportunity_id` names no
   open opportunity (`router.opportunities`); resolve the user's preferences;
   plan the route (`router.routing`); check risk (`router.risk`);
4. record each leg's intent in the ledger, execute the legs concurrently as
   IOC orders with a protective limit price, record each outcome;
5. store the result in the ledger, then hand it back for publication.

A crash anywhere leaves the request "in flight" in the ledger; `recover()`
settles it from what the ledger (and, live, the venue) knows — it is never
sent again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import orjson
import structlog

from connectors.types import decimal_text
from router.arbitrage import NoArbitrage, plan_arbitrage, settle_arbitrage
from router.book_walk import BPS
from router.cache import PriceCache
from router.errors import InvalidRequest
from router.execution import Executor, Fill, LegOutcome, OrderLeg, all_refused, leg_limit
from router.ledger import Ledger, LegIntent
from router.live import LiveExecutor
from router.metrics import ORDER_LEG_SECONDS, ORDER_REQUESTS
from router.opportunities import OpenOpportunities, check_open
from router.preferences import PreferenceStore, UserPreferences
from router.recovery import recover_request, result_from_message
from router.request import OrderRequest, RequestRules, Side
from router.results import ExecutionResult, fill_status
from router.risk import KillSwitch, PlannedLeg, RiskGate, RiskRejected
from router.routing import NoRoute, RoutePlan, RouteRequest, VenueView, plan_route
from router.validation import parse_request

log = structlog.get_logger(__name__)

ResidualPolicy = Literal["unwind", "report"]


@dataclass(frozen=True, slots=True)
class Handled:
    """The answer to one message: the result bytes to publish (if any) and what happened."""

    request_id: str | None
    result: bytes | None  # None when no well-formed request_id could be read
    executed: bool  # a new execution happened now
    replayed: bool  # the stored result of an earlier delivery
    invalid: InvalidRequest | None  # the message goes to the DLQ with this error


@dataclass(frozen=True, slots=True)
class VenuePrice:
    """The best fee-inclusive top-of-book price of one symbol and side across venues."""

    venue: str
    price: Decimal
    quantity: Decimal
    fee_bps: Decimal
    all_in_price: Decimal
    quote_age_ms: float


class SmartRouter:
    """Best execution across venues with preferences, risk and a durable exactly-once ledger."""

    def __init__(
        self,
        cache: PriceCache,
        executor: Executor,
        ledger: Ledger,
        preferences: PreferenceStore,
        risk: RiskGate,
        kill_switch: KillSwitch,
        rules: RequestRules,
        taker_fee_bps: Mapping[str, Decimal],
        *,
        residual_policy: ResidualPolicy = "unwind",
        opportunities: OpenOpportunities | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.cache = cache
        self.executor = executor
        self.ledger = ledger
        self.preferences = preferences
        self.risk = risk
        self.kill_switch = kill_switch
        self.rules = rules
        self.taker_fee_bps = dict(taker_fee_bps)
        self.residual_policy = residual_policy
        self.opportunities = opportunities  # what an arbitrage request's opportunity_id is checked against
        self.clock_ns = clock_ns
        if isinstance(executor, LiveExecutor):
            # A leg a venue acknowledged is recorded, so a restart never takes it for one never placed.
            executor.on_acknowledged = self._record_acknowledged

    def _record_acknowledged(self, leg: OrderLeg, venue_order_id: str) -> None:
        self.ledger.record_acknowledged(leg.request_id, leg.leg, venue_order_id)

    # ----- the Python API of DESIGN.md -------------------------------------------------------

    async def get_best_price(self, symbol: str, action: Side) -> VenuePrice | None:
        """Return the venue with the best fresh all-in (taker fee included) top-of-book price."""
        best: VenuePrice | None = None
        for view in self.venue_views(symbol):
            quote = view.quote
            fresh = view.quote_age_ms is not None and view.quote_age_ms <= self.cache.max_quote_age_ns / 1e6
            if quote is None or not fresh or quote.crossed:
                continue
            price, qty = (quote.ask, quote.ask_qty) if action == "buy" else (quote.bid, quote.bid_qty)
            fee = view.taker_fee_bps / BPS
            all_in = price * (1 + fee) if action == "buy" else price * (1 - fee)
            better = best is None or (
                all_in < best.all_in_price if action == "buy" else all_in > best.all_in_price
            )
            if better:
                age = view.quote_age_ms or 0.0
                best = VenuePrice(view.venue, price, qty, view.taker_fee_bps, all_in, age)
        return best

    async def get_user_preferences(self, user_id: str) -> UserPreferences:
        """Return the preferences in force for `user_id` (topic > config > defaults)."""
        return self.preferences.get(user_id)

    async def execute_with_preferences(
        self, symbol: str, action: Side, amount: Decimal | str, user_id: str
    ) -> ExecutionResult:
        """Route and execute a market order for `user_id` under their preferences."""
        message = {"v": 1, "request_id": _api_request_id(), "user_id": user_id, "kind": "order"}
        message |= {"symbol": symbol, "side": action, "quantity": _decimal_arg(amount)}
        return await self._submit_api(message)

    async def execute_arbitrage_opportunity(
        self, symbol: str, buy_broker: str, sell_broker: str, amount: Decimal | str, *, user_id: str = "api"
    ) -> ExecutionResult:
        """Buy `amount` on `buy_broker` and sell it on `sell_broker` at once."""
        message = {"v": 1, "request_id": _api_request_id(), "user_id": user_id, "kind": "arbitrage"}
        message |= {"symbol": symbol, "buy_venue": buy_broker, "sell_venue": sell_broker}
        message["quantity"] = _decimal_arg(amount)
        return await self._submit_api(message)

    async def _submit_api(self, message: dict[str, object]) -> ExecutionResult:
        handled = await self.handle(orjson.dumps(message))
        assert handled.result is not None  # the API builds well-formed ids
        return decode_result(handled.result)

    # ----- the message path ------------------------------------------------------------------

    async def handle(self, raw: bytes, *, received_ns: int | None = None) -> Handled:
        """Answer one order-request message exactly once; never raises for bad input."""
        now = self.clock_ns() if received_ns is None else received_ns
        try:
            request = parse_request(raw, self.rules, now_ns=now)
        except InvalidRequest as exc:
            return self._reject_invalid(exc, raw, now)
        claim = self.ledger.claim(request.request_id, request.user_id, raw, now_ns=now)
        if claim.status == "done":
            assert claim.result is not None
            ORDER_REQUESTS.labels(status="replayed", reject_code="").inc()
            return Handled(request.request_id, claim.result, executed=False, replayed=True, invalid=None)
        if claim.status == "in_flight":
            # Only a crash leaves a claim open; settle it from the ledger, never by sending again.
            recovered = await self._recover_one(request.request_id, raw)
            return Handled(request.request_id, recovered, executed=False, replayed=True, invalid=None)
        result = await self._execute(request, now)
        encoded = result.encode()
        self.ledger.complete(request.request_id, encoded, now_ns=self.clock_ns())
        ORDER_REQUESTS.labels(status=result.status, reject_code=result.reject_code or "").inc()
        log.info(
            "order_completed", request_id=request.request_id, status=result.status, code=result.reject_code
        )
        return Handled(request.request_id, encoded, executed=True, replayed=False, invalid=None)

    def _reject_invalid(self, exc: InvalidRequest, raw: bytes, now: int) -> Handled:
        ORDER_REQUESTS.labels(status="rejected", reject_code=exc.reject_code).inc()
        if exc.request_id is None or exc.user_id is None:
            return Handled(None, None, executed=False, replayed=False, invalid=exc)
        claim = self.ledger.claim(exc.request_id, exc.user_id, raw, now_ns=now)
        if claim.status == "done":
            return Handled(exc.request_id, claim.result, executed=False, replayed=True, invalid=exc)
        result = self._rejected(exc.request_id, exc.user_id, exc.kind, exc.reject_code, exc.message, now)
        encoded = result.encode()
        if claim.status == "new":
            self.ledger.complete(exc.request_id, encoded, now_ns=self.clock_ns())
        return Handled(exc.request_id, encoded, executed=False, replayed=False, invalid=exc)

    def _rejected(
        self,
        request_id: str,
        user_id: str,
        kind: str | None,
        code: str,
        message: str,
        received_ns: int,
        route: dict[str, object] | None = None,
    ) -> ExecutionResult:
        return ExecutionResult(
            request_id=request_id,
            user_id=user_id,
            kind=kind,
            mode=self.executor.mode,
            status="rejected",
            reject_code=code,
            message=message,
            received_ns=received_ns,
            completed_ns=self.clock_ns(),
            route=route,
        )

    async def _execute(self, request: OrderRequest, received_ns: int) -> ExecutionResult:
        if self.kill_switch.halted:
            reason = self.kill_switch.reason or "no reason given"
            return self.reject(
                request, "halted", f"trading is halted ({reason}); nothing was executed", received_ns
            )
        prefs = self.preferences.get(request.user_id)
        if request.kind == "arbitrage":
            return await self._execute_arbitrage(request, prefs, received_ns)
        return await self._execute_order(request, prefs, received_ns)

    def reject(
        self,
        request: OrderRequest,
        code: str,
        message: str,
        received_ns: int,
        route: dict[str, object] | None = None,
    ) -> ExecutionResult:
        return self._rejected(
            request.request_id, request.user_id, request.kind, code, message, received_ns, route
        )

    async def _execute_order(
        self, request: OrderRequest, prefs: UserPreferences, received_ns: int
    ) -> ExecutionResult:
        assert request.side is not None
        slippage = (
            request.max_slippage_bps if request.max_slippage_bps is not None else prefs.max_slippage_bps
        )
        route_request = RouteRequest(
            symbol=request.symbol,
            side=request.side,
            quantity=request.quantity,
            limit_price=request.limit_price,
            max_slippage_bps=slippage,
            strategy=prefs.strategy,
            max_quote_age_ms=self.cache.max_quote_age_ns / 1e6,
            allowed_venues=frozenset(request.venues) if request.venues else None,
            excluded_venues=prefs.excluded_venues,
            preferred_venues=prefs.preferred_venues,
            preferred_bias_bps=prefs.preferred_bias_bps,
            max_venues=prefs.max_venues if prefs.strategy == "split" else 1,
        )
        try:
            plan = plan_route(route_request, self.venue_views(request.symbol))
        except NoRoute as exc:
            return self.reject(request, exc.reject_code, exc.message, received_ns, exc.as_message())
        quotes = {view.venue: view.quote for view in self.venue_views(request.symbol)}
        legs = [
            OrderLeg(
                request.request_id,
                i,
                leg.venue,
                request.symbol,
                request.side,
                leg.quantity,
                leg_limit(quotes.get(leg.venue), leg.quantity, request.side, slippage, request.limit_price),
            )
            for i, leg in enumerate(plan.legs)
        ]
        try:
            self.risk.check(
                [
                    PlannedLeg(g.venue, g.symbol, g.side, g.quantity, r.expected_price)
                    for g, r in zip(legs, plan.legs, strict=True)
                ],
                user_max_order_notional=prefs.max_order_notional,
            )
        except RiskRejected as exc:
            return self.reject(request, exc.reject_code, exc.message, received_ns, plan.as_message())
        outcomes = await self.run_legs(legs)
        return self._order_result(request, plan, outcomes, received_ns)

    def _order_result(
        self, request: OrderRequest, plan: RoutePlan, outcomes: Sequence[LegOutcome], received_ns: int
    ) -> ExecutionResult:
        if refused := all_refused(outcomes):
            message = "; ".join(o.error or "refused" for o in outcomes) + "; nothing was executed"
            return self.reject(request, refused, message, received_ns, plan.as_message())
        fills = tuple(f for o in outcomes for f in o.fills)
        filled = sum((f.quantity for f in fills), Decimal(0))
        status = fill_status(request.quantity, filled)
        problems = "; ".join(o.error for o in outcomes if o.error)
        done, wanted = decimal_text(filled), decimal_text(request.quantity)
        message = {
            "filled": f"filled {done} {request.symbol} on {len(plan.legs)} venue(s): {plan.reason}",
            "partially_filled": f"filled {done} of {wanted}: {problems}",
            "failed": f"nothing filled: {problems}",
        }[status]
        return ExecutionResult(
            request_id=request.request_id,
            user_id=request.user_id,
            kind=request.kind,
            mode=self.executor.mode,
            status=status,
            reject_code=None,
            message=message,
            received_ns=received_ns,
            completed_ns=self.clock_ns(),
            fills=fills,
            route=plan.as_message(),
            symbol=request.symbol,
        )

    async def _execute_arbitrage(
        self, request: OrderRequest, prefs: UserPreferences, received_ns: int
    ) -> ExecutionResult:
        if closed := await check_open(self.opportunities, request, self.clock_ns()):
            return self.reject(request, "opportunity_closed", f"{closed}; nothing was executed", received_ns)
        slippage = (
            request.max_slippage_bps if request.max_slippage_bps is not None else prefs.max_slippage_bps
        )
        views = {v.venue: v for v in self.venue_views(request.symbol)}
        try:
            plan = plan_arbitrage(request, views, slippage, self.cache.max_quote_age_ns / 1e6)
        except NoArbitrage as exc:
            return self.reject(request, exc.reject_code, exc.message, received_ns, exc.route)
        try:
            self.risk.check(plan.planned_legs(), user_max_order_notional=prefs.max_order_notional)
        except RiskRejected as exc:
            return self.reject(request, exc.reject_code, exc.message, received_ns, plan.route)
        outcomes = await self.run_legs(plan.legs)
        return await settle_arbitrage(self, request, plan, outcomes, received_ns)

    async def run_legs(self, legs: Sequence[OrderLeg]) -> list[LegOutcome]:
        """Record every leg's intent, execute them concurrently, record each outcome and fill."""
        for leg in legs:
            self.ledger.record_leg_intent(_intent(leg))
        return list(await asyncio.gather(*(self._run_leg(leg) for leg in legs)))

    async def _run_leg(self, leg: OrderLeg) -> LegOutcome:
        self.ledger.mark_leg(leg.request_id, leg.leg, "sent")
        started = time.monotonic()
        outcome = await self.executor.execute(leg)
        ORDER_LEG_SECONDS.labels(venue=leg.venue).observe(time.monotonic() - started)
        self.ledger.mark_leg(leg.request_id, leg.leg, "settled", outcome.encode())
        for fill in outcome.fills:
            self.risk.record_fill(fill.venue, leg.symbol, fill.side, fill.quantity, fill.price)
        return outcome

    def venue_views(self, symbol: str) -> list[VenueView]:
        """Return what the planner knows of every configured venue for `symbol` now."""
        now = self.cache.clock_ns()
        views = []
        for venue, fee in sorted(self.taker_fee_bps.items()):
            entry = self.cache.get(venue, symbol)
            views.append(
                VenueView(
                    venue=venue,
                    quote=None if entry is None else entry.quote,
                    quote_age_ms=None if entry is None else entry.age_ns(now) / 1e6,
                    taker_fee_bps=fee,
                    ack_latency_ms=self.executor.observed_ack_latency_ms(venue),
                )
            )
        return views

    # ----- recovery after a crash --------------------------------------------------------------

    async def recover(self) -> list[bytes]:
        """Rebuild positions from the ledger, then settle every request a previous run left in flight.

        Return the settled requests' results, oldest first.
        """
        self.restore_positions()
        results = [await self._recover_one(request_id, raw) for request_id, raw in self.ledger.in_flight()]
        if results:
            log.warning("router_recovered_in_flight", requests=len(results))
        return results

    def restore_positions(self) -> int:
        """Feed every fill the ledger recorded into the risk gate, so exposure limits survive a restart."""
        fills = 0
        for request, intent in self.ledger.settled_legs():
            symbol = orjson.loads(request).get("symbol")
            if not isinstance(symbol, str) or intent.outcome is None:
                continue
            for fill in (Fill.from_message(f) for f in orjson.loads(intent.outcome)["fills"]):
                self.risk.record_fill(fill.venue, symbol, fill.side, fill.quantity, fill.price)
                fills += 1
        if fills:
            log.info("positions_restored", fills=fills, exposure=self.risk.snapshot())
        return fills

    async def _recover_one(self, request_id: str, raw: bytes) -> bytes:
        result = await recover_request(self, request_id, raw)
        encoded = result.encode()
        self.ledger.complete(request_id, encoded, now_ns=self.clock_ns())
        return encoded


def decode_result(raw: bytes) -> ExecutionResult:
    """Rebuild the dataclass view of a stored result (for the Python API)."""
    return result_from_message(orjson.loads(raw))


def _intent(leg: OrderLeg) -> LegIntent:
    return LegIntent(
        request_id=leg.request_id,
        leg=leg.leg,
        venue=leg.venue,
        client_order_id=leg.client_order_id,
        side=leg.side,
        quantity=leg.quantity,
        limit_price=leg.limit_price,
        state="intent",
        outcome=None,
    )


def _api_request_id() -> str:
    return f"api-{uuid.uuid4().hex}"


def _decimal_arg(amount: Decimal | str) -> str:
    return decimal_text(amount) if isinstance(amount, Decimal) else str(amount)
