"""SmartRouter: one order request in, exactly one execution and one result out.

The lifecycle of a request, whoever submits it (the Kafka service or the
Python API):

1. authenticate the user and validate (`router.validation`); an unproven or
   invalid request is answered `rejected` (`router.intake`);
2. claim its request_id in the durable ledger — a request already handled is
   answered with its stored result and never executed again (a duplicate
   arriving mid-execution waits for the first's result: `router.per_key`);
3. refuse while halted; refuse an arbitrage whose `opportunity_id` names no
   open opportunity (`router.opportunities`); resolve the user's preferences;
   plan the route (`router.routing`) over the venues' books and what their
   balances can fund (`router.balances`); check risk (`router.risk`);
4. reserve each leg's funds, record its intent in the ledger, execute the legs concurrently as
   IOC orders with a protective limit price, record each outcome
   (`router.legs.LegRunner`, which also settles them after a crash);
5. for an arbitrage whose legs filled unequally, record the residual in the
   ledger and make the first attempt to flatten it (`router.residual_worker`,
   whose `run` — `work_residuals` — works the rest in the background);
6. store the result in the ledger, then hand it back for publication.

Ledger writes go through the group writer (`router.ledger.writer`): off the loop, on disk first.

A crash anywhere leaves the request "in flight" in the ledger; `recover()`
settles it from what the ledger (and, live, the venue) knows — it is never
sent again. An error executing or settling one request (`ExecutionError`: a
venue that stays dark, an outcome it cannot tell yet) leaves it in flight too,
unanswered for now: the background settler (`router.settler`, which states why
its offset may be committed) settles and answers it later, and the router
carries on with the next request.

The Python API of DESIGN.md (`get_best_price`, `execute_with_preferences`, ...)
is a method here, its stateless pieces in `router.api`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from decimal import Decimal

import orjson
import structlog

from connectors.types import Mode, Side
from router.access import AccessPolicy, Forbidden
from router.api import VenuePrice, arbitrage_message, best_price, decode_result, order_message
from router.arbitrage import NoArbitrage, plan_arbitrage, settle_arbitrage
from router.balances import BalanceBook
from router.cache import PriceCache
from router.errors import ExecutionError, InvalidRequest, LeaseLost
from router.execution import Executor, refusal
from router.intake import Handled, Intake
from router.kill_switch import KillSwitch
from router.leases import LeaseKeeper
from router.ledger import ClaimStatus, Ledger
from router.legs import LegRunner
from router.metrics import LEASES_LOST, ORDER_REQUESTS
from router.opportunities import OpenOpportunities, check_open
from router.orders import order_result, plan_order
from router.per_key import PerKey
from router.preferences import PreferenceStore, UserPreferences
from router.recovery import recover_request
from router.request import ArbitrageRequest, OrderRequest, Request, RequestRules
from router.request_age import EXPIRED, Enqueued, expired_message
from router.residual_worker import ResidualWorker
from router.residuals import ResidualSettings
from router.results import ExecutionResult
from router.risk import RiskGate, RiskRejected
from router.routing import NoRoute, VenueView
from router.settler import Publish, Settler
from router.signatures import Headers
from router.validation import parse_request
from router.views import venue_views

__all__ = ["Handled", "SmartRouter", "VenuePrice", "decode_result"]

log = structlog.get_logger(__name__)


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
        residuals: ResidualSettings | None = None,
        opportunities: OpenOpportunities | None = None,
        access: AccessPolicy | None = None,
        balances: BalanceBook | None = None,
        max_request_age_ms: int | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """Route over `cache` through `executor`; `balances` funds each leg (None: no venue is tracked)."""
        self._cache = cache
        self._balances = balances if balances is not None else BalanceBook({})
        self._legs = LegRunner(
            ledger, executor, risk, self._balances, lambda venue: self._taker_fee_bps.get(venue, Decimal(0))
        )
        self._ledger = ledger
        self._preferences = preferences
        self._risk = risk
        self._kill_switch = kill_switch
        self._rules = rules
        self._taker_fee_bps = dict(taker_fee_bps)
        self._residuals = ResidualWorker(
            ledger,
            self._legs,
            cache,
            self._taker_fee_bps,
            kill_switch,
            residuals or ResidualSettings(),
            clock_ns=clock_ns,
        )
        self._opportunities = opportunities  # what an arbitrage request's opportunity_id is checked against
        self._access = access or AccessPolicy()
        self._intake = Intake(ledger, self._access, self._legs.mode, clock_ns)
        # An enqueued request older than this is answered "expired" (router.request_age); None: no bound.
        self._max_request_age_ns = None if max_request_age_ms is None else max_request_age_ms * 1_000_000
        self._clock_ns = clock_ns
        # Settles (and answers) in the background each request whose execution or settlement failed.
        self.settler = Settler(ledger, self._recover_one, clock_ns=clock_ns)
        # The request_ids being answered in this process now: a duplicate waits for the first's answer.
        self._answering = PerKey()
        # Shared ledger: renews leases, takes over a gone router's requests, counts others' fills.
        self.leases = LeaseKeeper(ledger, self.settler, self._answering.busy, self._legs, risk)

    @property
    def mode(self) -> Mode:
        """Return whether this router trades on paper or live."""
        return self._legs.mode

    @property
    def risk(self) -> RiskGate:
        """Return the risk gate, which holds the net positions and the loss guard."""
        return self._risk

    @property
    def balances(self) -> BalanceBook:
        """Return the balance book every leg is funded from."""
        return self._balances

    def watch_fills(self, callback: Callable[[str], None]) -> None:
        """Call `callback(venue)` after every leg that filled on `venue` (live balances re-read)."""
        self._legs.on_fill = callback

    @property
    def residuals(self) -> ResidualWorker:
        """Return the worker that flattens arbitrage residuals (its `step` makes one attempt)."""
        return self._residuals

    @property
    def taker_fees(self) -> dict[str, Decimal]:
        """Return the taker fee (bps) each routable venue is priced with."""
        return dict(self._taker_fee_bps)

    def set_taker_fee(self, venue: str, fee_bps: Decimal) -> None:
        """Price `venue` with `fee_bps` from now on (the account's real fee, read at connect)."""
        if venue not in self._taker_fee_bps:
            raise ValueError(f"{venue} is not a routable venue")
        self._taker_fee_bps[venue] = fee_bps

    # ----- the Python API of DESIGN.md (router.api) -------------------------------------------

    async def get_best_price(self, symbol: str, action: Side) -> VenuePrice | None:
        """Return the venue with the best fresh all-in (taker fee included) top-of-book price."""
        return best_price(self._venue_views(symbol), action, self._cache.max_quote_age_ns / 1e6)

    async def get_user_preferences(self, user_id: str) -> UserPreferences:
        """Return the preferences in force for `user_id` (topic > config > defaults)."""
        return self._preferences.get(user_id)

    async def execute_with_preferences(
        self, symbol: str, action: Side, amount: Decimal | str, user_id: str
    ) -> ExecutionResult:
        """Route and execute a market order for `user_id` under their preferences."""
        return await self._submit_api(order_message(symbol, action, amount, user_id))

    async def execute_arbitrage_opportunity(
        self, symbol: str, buy_broker: str, sell_broker: str, amount: Decimal | str, *, user_id: str = "api"
    ) -> ExecutionResult:
        """Buy `amount` on `buy_broker` and sell it on `sell_broker` at once."""
        return await self._submit_api(arbitrage_message(symbol, buy_broker, sell_broker, amount, user_id))

    async def _submit_api(self, message: dict[str, object]) -> ExecutionResult:
        handled = await self.handle(orjson.dumps(message))
        if handled.result is None:  # the API builds well-formed ids: the settler holds it
            raise ExecutionError(f"request {handled.request_id} is in flight: settled in the background")
        return decode_result(handled.result)

    # ----- the message path ------------------------------------------------------------------

    async def handle(
        self,
        raw: bytes,
        *,
        received_ns: int | None = None,
        headers: Headers = (),
        enqueued: Enqueued | None = None,
    ) -> Handled:
        """Answer one order-request message exactly once; never raises for bad input.

        `headers` are the Kafka record's: they carry the signature when signatures are required.
        `enqueued` is when the message entered its transport (its Kafka record's time): a new
        request older than `max_request_age_ms` by then is answered `expired`, never executed.
        """
        now = self._clock_ns() if received_ns is None else received_ns
        try:
            request = parse_request(raw, self._rules, now_ns=now)
        except InvalidRequest as exc:
            if denied := self._intake.unauthenticated(raw, headers, now, exc):
                return denied
            return await self._answering.run(exc.request_id, self._intake.reject_invalid(exc, raw, now))
        if denied := self._intake.unauthenticated(raw, headers, now, request):
            return denied
        return await self._answering.run(request.request_id, self._claimed(request, raw, now, enqueued))

    async def _claimed(self, request: Request, raw: bytes, now: int, enqueued: Enqueued | None) -> Handled:
        """Claim `request` (durably), then execute it if new and store its result (durably)."""
        claim = await self._ledger.aclaim(request.request_id, request.user_id, raw, now_ns=now)
        if claim.status == "done":
            assert claim.result is not None
            ORDER_REQUESTS.labels(status="replayed", reject_code="").inc()
            return Handled(request.request_id, claim.result, executed=False, replayed=True, invalid=None)
        try:
            return await self._answer_claim(claim.status, request, raw, now, enqueued)
        except LeaseLost as exc:  # another router took the claim over (shared ledger): it answers
            LEASES_LOST.inc()
            self._legs.release_hold(request.request_id)
            log.warning("order_request_handed_over", request_id=request.request_id, error=str(exc))
            return Handled(request.request_id, None, executed=False, replayed=True, invalid=None)

    async def _answer_claim(
        self, status: ClaimStatus, request: Request, raw: bytes, now: int, enqueued: Enqueued | None
    ) -> Handled:
        if status != "new":
            # "in_flight": a crash or a failed settlement left the claim open — the settler answers a
            # request it holds, any other is settled from the ledger now, never by sending again;
            # "held": another live router holds the claim (shared ledger) and answers it.
            held = status == "held" or self.settler.holds(request.request_id)
            recovered = None if held else await self._try_recover(request.request_id, raw)
            return Handled(request.request_id, recovered, executed=False, replayed=True, invalid=None)
        if stale := expired_message(enqueued, now, self._max_request_age_ns):
            log.warning("order_request_expired", request_id=request.request_id, reason=stale)
            result = self._reject(request, EXPIRED, stale, now)
        else:
            try:
                result = await self._execute(request, now)
            except ExecutionError as exc:  # in flight; answered by the settler once settled
                await self.settler.hold(request.request_id, raw, str(exc), since_ns=now)
                return Handled(request.request_id, None, executed=True, replayed=False, invalid=None)
        encoded = result.encode()
        await self._ledger.acomplete(request.request_id, encoded, now_ns=self._clock_ns())
        ORDER_REQUESTS.labels(status=result.status, reject_code=result.reject_code or "").inc()
        log.info(
            "order_completed", request_id=request.request_id, status=result.status, code=result.reject_code
        )
        return Handled(request.request_id, encoded, executed=True, replayed=False, invalid=None)

    async def _execute(self, request: Request, received_ns: int) -> ExecutionResult:
        if self._kill_switch.halted:
            reason = self._kill_switch.reason or "no reason given"
            return self._reject(
                request, "halted", f"trading is halted ({reason}); nothing was executed", received_ns
            )
        try:
            self._access.authorize(request)
        except Forbidden as exc:
            return self._reject(request, exc.reject_code, f"{exc.message}; nothing was executed", received_ns)
        prefs = self._preferences.get(request.user_id)
        if isinstance(request, ArbitrageRequest):
            return await self._execute_arbitrage(request, prefs, received_ns)
        return await self._execute_order(request, prefs, received_ns)

    def _reject(
        self,
        request: Request,
        code: str,
        message: str,
        received_ns: int,
        route: dict[str, object] | None = None,
    ) -> ExecutionResult:
        return self._intake.rejected(
            request.request_id, request.user_id, request.kind, code, message, received_ns, route
        )

    async def _execute_order(
        self, request: OrderRequest, prefs: UserPreferences, received_ns: int
    ) -> ExecutionResult:
        entitled, hold = self._access.of(request.user_id), request.request_id
        views = [view for view in self._venue_views(request.symbol) if entitled.allows_venue(view.venue)]
        try:
            plan = plan_order(request, prefs, views, self._cache.max_quote_age_ns / 1e6)
        except NoRoute as exc:
            return self._reject(request, exc.reject_code, exc.message, received_ns, exc.as_message())
        # The route's message is built once, after the legs ran (never on the way to the venue).
        try:
            self._risk.check(plan.planned_legs(), user_max_order_notional=prefs.max_order_notional, hold=hold)
        except RiskRejected as exc:
            return self._reject(request, exc.reject_code, exc.message, received_ns, plan.route.as_message())
        outcomes = await self._legs.run_held(hold, plan.legs)
        if refused := refusal(outcomes):
            return self._reject(request, *refused, received_ns, plan.route.as_message())
        return order_result(
            request,
            plan.route,
            outcomes,
            mode=self._legs.mode,
            received_ns=received_ns,
            completed_ns=self._clock_ns(),
        )

    async def _execute_arbitrage(
        self, request: ArbitrageRequest, prefs: UserPreferences, received_ns: int
    ) -> ExecutionResult:
        hold = request.request_id
        if closed := await check_open(self._opportunities, request, self._clock_ns()):
            return self._reject(request, "opportunity_closed", f"{closed}; nothing was executed", received_ns)
        slippage = prefs.max_slippage_bps if request.max_slippage_bps is None else request.max_slippage_bps
        views = {v.venue: v for v in self._venue_views(request.symbol)}
        try:
            plan = plan_arbitrage(request, views, slippage, self._cache.max_quote_age_ns / 1e6)
        except NoArbitrage as exc:
            return self._reject(request, exc.reject_code, exc.message, received_ns, exc.route)
        try:
            self._risk.check(plan.planned_legs(), user_max_order_notional=prefs.max_order_notional, hold=hold)
        except RiskRejected as exc:
            return self._reject(request, exc.reject_code, exc.message, received_ns, plan.route)
        outcomes = await self._legs.run_held(hold, plan.legs)
        if refused := refusal(outcomes):
            return self._reject(request, *refused, received_ns, plan.route)
        buy, sell = outcomes
        outcome = await self._residuals.settle_arbitrage(
            request.request_id, request.user_id, request.symbol, request.quantity, buy, sell
        )
        return settle_arbitrage(
            outcome, plan.route, mode=self._legs.mode, received_ns=received_ns, completed_ns=self._clock_ns()
        )

    def _venue_views(self, symbol: str) -> list[VenueView]:
        """Return what the planner knows of every configured venue for `symbol` now."""
        return venue_views(
            self._cache, self._taker_fee_bps, self._legs.ack_latency_ms, self._balances, symbol
        )

    # ----- recovery after a crash --------------------------------------------------------------

    async def recover(self) -> list[bytes]:
        """Rebuild positions from the ledger, then settle every request a previous run left in flight.

        Return the settled requests' results, oldest first. Results a previous run owed go back to
        the settler, and so does a request that cannot be settled yet: neither stops the start.
        """
        self.restore_positions()
        self.settler.resume()
        results = []
        for request_id, raw in self._ledger.in_flight():
            if not self.settler.holds(request_id) and (result := await self._try_recover(request_id, raw)):
                results.append(result)
        if results:
            log.warning("router_recovered_in_flight", requests=len(results))
        return results

    async def settle_in_background(self, stop: asyncio.Event, publish: Publish) -> None:
        """Settle the requests the settler holds, publishing each result through `publish`, until `stop`."""
        await self.settler.run(stop, publish)

    async def _try_recover(self, request_id: str, raw: bytes) -> bytes | None:
        """Settle an in-flight request now and return its result; None: the settler took it over."""
        try:
            return await self._recover_one(request_id, raw)
        except ExecutionError as exc:
            await self.settler.hold(request_id, raw, str(exc))
            return None

    async def work_residuals(self, stop: asyncio.Event) -> None:
        """Work every open arbitrage residual in the ledger until it is flat (or halt), until `stop`."""
        await self._residuals.run(stop)

    def restore_positions(self) -> int:
        """Feed every fill the ledger recorded into the risk gate, so positions survive a restart."""
        return self._legs.restore_positions()

    async def _recover_one(self, request_id: str, raw: bytes) -> bytes:
        result = await recover_request(self._legs, self._residuals, request_id, raw, self._clock_ns())
        encoded = result.encode()
        await self._ledger.acomplete(request_id, encoded, now_ns=self._clock_ns())
        self._legs.release_hold(request_id)  # settled: its fills are in the positions
        return encoded
