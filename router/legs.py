"""LegRunner: the life of an order leg, from intent to fills, and its settlement after a crash.

Every leg — of an order, of an arbitrage, of an unwind — goes through here:

1. its intent is recorded in the ledger before anything is sent;
2. it is marked "sent", executed once, and its outcome recorded as "settled";
3. its fills are fed to the risk gate.

A live venue that acknowledged a leg before its state could be read is
recorded too ("acknowledged"), so a restart never takes that leg for one never
placed. After a crash, `settle` settles each leg of a request from what the
ledger recorded; an unsettled leg is settled by the executor from what the
venue knows — never sent again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from decimal import Decimal

import orjson
import structlog

from connectors.types import Mode
from router.execution import Executor, Fill, LegOutcome, OrderLeg
from router.ledger import Ledger, LegIntent
from router.live import LiveExecutor
from router.metrics import ORDER_LEG_SECONDS
from router.risk import RiskGate

log = structlog.get_logger(__name__)


class LegRunner:
    """Run legs exactly once through the executor, with every step durable in the ledger."""

    def __init__(self, ledger: Ledger, executor: Executor, risk: RiskGate) -> None:
        self._ledger = ledger
        self._executor = executor
        self._risk = risk
        if isinstance(executor, LiveExecutor):
            # A leg a venue acknowledged is recorded, so a restart never takes it for one never placed.
            executor.on_acknowledged = self._record_acknowledged

    @property
    def mode(self) -> Mode:
        """Return whether legs trade on paper or live."""
        return self._executor.mode

    def ack_latency_ms(self, venue: str) -> float | None:
        """Return the executor's measured order-acknowledgement latency on `venue`, if any."""
        return self._executor.observed_ack_latency_ms(venue)

    def _record_acknowledged(self, leg: OrderLeg, venue_order_id: str) -> None:
        self._ledger.record_acknowledged(leg.request_id, leg.leg, venue_order_id)

    async def run(self, legs: Sequence[OrderLeg]) -> list[LegOutcome]:
        """Record every leg's intent, execute them concurrently, record each outcome and fill."""
        for leg in legs:
            self._ledger.record_leg_intent(intent_of(leg))
        return list(await asyncio.gather(*(self._run_one(leg) for leg in legs)))

    async def _run_one(self, leg: OrderLeg) -> LegOutcome:
        self._ledger.mark_leg(leg.request_id, leg.leg, "sent")
        started = time.monotonic()
        outcome = await self._executor.execute(leg)
        ORDER_LEG_SECONDS.labels(venue=leg.venue).observe(time.monotonic() - started)
        self._settled(leg, outcome)
        return outcome

    def _settled(self, leg: OrderLeg, outcome: LegOutcome) -> None:
        self._ledger.mark_leg(leg.request_id, leg.leg, "settled", outcome.encode())
        for fill in outcome.fills:
            self._risk.record_fill(fill.venue, leg.symbol, fill.side, fill.quantity, fill.price)

    async def settle(self, request_id: str, symbol: str) -> tuple[list[LegOutcome], int]:
        """Settle every leg of an interrupted request without resending any.

        Return the outcomes of all its legs and how many were reconciled with the executor now.
        """
        outcomes: list[LegOutcome] = []
        reconciled = 0
        acknowledged = self._ledger.acknowledged(request_id)
        for intent in self._ledger.legs(request_id):
            outcomes.append(await self.settle_leg(intent, symbol, acknowledged=intent.leg in acknowledged))
            reconciled += intent.state != "settled"
        return outcomes, reconciled

    async def settle_leg(self, intent: LegIntent, symbol: str, *, acknowledged: bool) -> LegOutcome:
        """Return a recorded leg's outcome; an unsettled one is settled from the venue, never sent again."""
        leg = _leg(intent, symbol)
        if intent.state == "settled" and intent.outcome is not None:
            return LegOutcome.decode(leg, intent.outcome)
        outcome = await self._executor.recover(leg, acknowledged=acknowledged)
        self._settled(leg, outcome)
        return outcome

    def restore_positions(self) -> int:
        """Feed every fill the ledger recorded into the risk gate, so exposure limits survive a restart."""
        fills = 0
        for request, intent in self._ledger.settled_legs():
            symbol = orjson.loads(request).get("symbol")
            if not isinstance(symbol, str) or intent.outcome is None:
                continue
            for fill in (Fill.from_message(f) for f in orjson.loads(intent.outcome)["fills"]):
                self._risk.record_fill(fill.venue, symbol, fill.side, fill.quantity, fill.price)
                fills += 1
        if fills:
            log.info("positions_restored", fills=fills, exposure=self._risk.snapshot())
        return fills


def intent_of(leg: OrderLeg) -> LegIntent:
    """Return the ledger's record of `leg` before it is sent."""
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


def _leg(intent: LegIntent, symbol: str) -> OrderLeg:
    return OrderLeg(
        intent.request_id,
        intent.leg,
        intent.venue,
        symbol,
        "buy" if intent.side == "buy" else "sell",
        intent.quantity,
        intent.limit_price or Decimal(0),
        client_order_id=intent.client_order_id,
    )
