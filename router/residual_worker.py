"""ResidualWorker: work every open residual in the ledger until it is flat, or halt trading.

A residual is recorded in the ledger before anything works it. Each attempt is
a normal leg through the LegRunner (intent recorded before it is sent, exactly
once; leg numbers 2, 3, 4, … of the same request, so client order ids stay
deterministic), recorded together with the attempt count so two workers never
send the same attempt. A residual not flat `timeout_ms` after it began is
abandoned: the kill switch halts trading with a reason naming the request, the
venue and the quantity, and `smartroute_residual_halts_total` counts it.

The router makes the first attempt before it publishes the arbitrage's result
(which then says "working" with the quantity remaining, or "flat"); `run` works
the rest in the background, and after a restart resumes every residual the
ledger holds open. While trading is halted nothing is sent, and the timeout
still runs. An attempt whose outcome the venue cannot tell yet stays in flight
and is settled from the venue on a later pass; it never stops the worker, and
the timeout still halts trading while it cannot be told.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

import structlog

from connectors.types import decimal_text
from router.arbitrage import ArbitrageOutcome
from router.cache import PriceCache
from router.errors import ExecutionError, LeaseLost
from router.execution import LegOutcome
from router.kill_switch import MAX_REASON_CHARS, KillSwitch
from router.ledger import Ledger, ResidualRecord, ResidualState
from router.legs import LegRunner, intent_of
from router.metrics import HALTED, RESIDUAL_ATTEMPTS, RESIDUAL_HALTS, RESIDUAL_OPEN
from router.residuals import (
    FIRST_RESIDUAL_LEG,
    ResidualSettings,
    next_attempt,
    residual_of,
    residual_report,
)

log = structlog.get_logger(__name__)

HALTED_BY = "smartroute"
_PAUSE_S = 0.25  # between passes over the open residuals: lets the books move between attempts


@dataclass(frozen=True, slots=True)
class ResidualView:
    """A residual as the arbitrage's result reports it, with the attempts made on it so far."""

    record: ResidualRecord
    attempts: tuple[LegOutcome, ...]

    def report(self, settings: ResidualSettings) -> dict[str, object]:
        """Return the result's `residual` object."""
        return residual_report(self.record, self.attempts, settings)


class ResidualWorker:
    """Flatten residuals attempt by attempt; halt trading when one outlives its timeout."""

    def __init__(
        self,
        ledger: Ledger,
        legs: LegRunner,
        cache: PriceCache,
        fees_bps: Mapping[str, Decimal],
        kill_switch: KillSwitch,
        settings: ResidualSettings,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._ledger = ledger
        self._legs = legs
        self._cache = cache
        self._fees_bps = fees_bps  # the router's own mapping: live fee updates apply here too
        self._kill_switch = kill_switch
        self.settings = settings
        self._clock_ns = clock_ns
        self._busy: set[str] = set()

    async def settle_arbitrage(
        self, request_id: str, user_id: str, symbol: str, quantity: Decimal, buy: LegOutcome, sell: LegOutcome
    ) -> ArbitrageOutcome:
        """Return what an arbitrage's two legs did, recording and first working any residual they left."""
        view = await self.settle(request_id, symbol, buy, sell)
        if view is None:
            return ArbitrageOutcome(request_id, user_id, symbol, quantity, buy, sell)
        report = view.report(self.settings)
        return ArbitrageOutcome(request_id, user_id, symbol, quantity, buy, sell, report, view.attempts)

    async def settle(
        self, request_id: str, symbol: str, buy: LegOutcome, sell: LegOutcome
    ) -> ResidualView | None:
        """Record what the arbitrage's legs left unhedged (None if nothing) and make the first attempt."""
        found = residual_of(request_id, symbol, buy, sell, self.settings.policy, self._clock_ns())
        if found is None:
            return None
        record = self._ledger.record_residual(found)  # a restart gets the one recorded before the crash
        log.warning(
            "residual_recorded",
            request_id=request_id,
            venue=record.venue,
            side=record.side,
            quantity=decimal_text(record.quantity),
            state=record.state,
        )
        if record.state == "open":
            record = await self.step(request_id) or record
        self._count_open()
        return ResidualView(record, tuple(await self._attempts(record)))

    async def run(self, stop: asyncio.Event, *, pause_s: float = _PAUSE_S) -> None:
        """Work the open residuals until `stop`: one attempt on each per pass."""
        while not stop.is_set():
            for record in self._ledger.open_residuals():
                try:
                    await self._work(record)
                except LeaseLost as exc:  # another router took the request over (shared ledger): its now
                    log.warning("residual_handed_over", request_id=record.request_id, error=str(exc))
            self._count_open()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause_s)

    async def _work(self, record: ResidualRecord) -> None:
        try:
            await self.step(record.request_id)
        except ExecutionError as exc:
            # The attempt's leg stays sent in the ledger; the next pass settles it from the venue.
            log.error("residual_attempt_unsettled", request_id=record.request_id, error=str(exc))
            if self._clock_ns() - record.started_ns >= self.settings.timeout_ms * 1_000_000:
                self._abandon(record)  # not known flat in time: halt, as for any other residual

    async def step(self, request_id: str) -> ResidualRecord | None:
        """Make one attempt on an open residual (or end it: flat, or abandoned on timeout)."""
        if request_id in self._busy:
            return self._ledger.residual(request_id)
        self._busy.add(request_id)
        try:
            return await self._step(request_id)
        finally:
            self._busy.discard(request_id)
            self._count_open()

    async def _step(self, request_id: str) -> ResidualRecord | None:
        record = self._ledger.residual(request_id)
        if record is None or record.state != "open":
            return record
        record = await self._refresh(record)
        if record.state != "open":
            return record
        if self._clock_ns() - record.started_ns >= self.settings.timeout_ms * 1_000_000:
            return self._abandon(record)
        if self._kill_switch.halted:
            return record
        quotes = {v: e.quote for v, e in self._cache.fresh(record.symbol).items() if not e.quote.crossed}
        fees = {v: f for v, f in self._fees_bps.items() if v in quotes}
        leg_number = max((leg.leg for leg in self._ledger.legs(request_id)), default=0) + 1
        leg = next_attempt(record, max(leg_number, FIRST_RESIDUAL_LEG), quotes, fees, self.settings)
        if leg is None:
            log.warning("residual_no_quote", request_id=request_id, symbol=record.symbol)
            return record
        if not self._ledger.record_residual_attempt(intent_of(leg), now_ns=self._clock_ns()):
            return self._ledger.residual(request_id)  # another worker is on it
        [outcome] = await self._legs.run([leg])
        RESIDUAL_ATTEMPTS.labels(venue=leg.venue).inc()
        log.info(
            "residual_attempt",
            request_id=request_id,
            leg=leg.leg,
            venue=leg.venue,
            limit=decimal_text(leg.limit_price),
            filled=decimal_text(outcome.filled),
            error=outcome.error,
        )
        return await self._refresh(self._ledger.residual(request_id) or record)

    async def _attempts(self, record: ResidualRecord) -> list[LegOutcome]:
        """Return the outcome of every attempt on `record`, settling any a crash left unsettled."""
        acknowledged = self._ledger.acknowledged(record.request_id)
        return [
            await self._legs.settle_leg(intent, record.symbol, acknowledged=intent.leg in acknowledged)
            for intent in self._ledger.legs(record.request_id)
            if intent.leg >= FIRST_RESIDUAL_LEG
        ]

    async def _refresh(self, record: ResidualRecord) -> ResidualRecord:
        """Store the remaining quantity the settled attempts leave; flat when nothing remains."""
        filled = sum((o.filled for o in await self._attempts(record)), Decimal(0))
        remaining = max(record.quantity - filled, Decimal(0))
        if remaining == record.remaining and remaining > 0:
            return record
        state: ResidualState = "flat" if remaining == 0 else "open"
        updated = self._ledger.update_residual(
            record.request_id, remaining=remaining, state=state, now_ns=self._clock_ns()
        )
        if state == "flat":
            log.warning("residual_flat", request_id=record.request_id, attempts=updated.attempts)
        return updated

    def _abandon(self, record: ResidualRecord) -> ResidualRecord:
        abandoned = self._ledger.update_residual(
            record.request_id, remaining=record.remaining, state="abandoned", now_ns=self._clock_ns()
        )
        exposure = "long" if record.side == "sell" else "short"
        reason = (
            f"residual of arbitrage {record.request_id}: {decimal_text(record.remaining)} {record.symbol} "
            f"still {exposure} on {record.venue} after {self.settings.timeout_ms} ms and "
            f"{record.attempts} attempt(s); flatten it by hand, then resume"
        )
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 1] + "…"
        self._kill_switch.halt(reason, HALTED_BY)
        HALTED.set(1)
        RESIDUAL_HALTS.inc()
        log.error("residual_abandoned", request_id=record.request_id, reason=reason)
        return abandoned

    def _count_open(self) -> None:
        RESIDUAL_OPEN.set(len(self._ledger.open_residuals()))
