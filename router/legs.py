"""LegRunner: the life of an order leg, from intent to fills, and its settlement after a crash.

Every leg — of an order, of an arbitrage, of an unwind — goes through here:

1. what it may spend is reserved in the balance book (`router.balances`): a leg
   the venue cannot fund is refused unsent, and so are its siblings — an
   arbitrage never sends one leg alone for want of funds;
2. its intent is recorded in the ledger, marked "sent", before anything is sent
   (the intents of a request's legs, marked sent, in one write);
3. it is executed once, and its outcome recorded as "settled"; every one of these
   writes goes through the ledger's group writer (`router.ledger.writer`) and is
   on disk before the next step begins;
4. its reservation is released and its fills move the balance book and feed the
   risk gate (net positions, realized PnL, the loss limit).

A live venue that acknowledged a leg before its state could be read is
recorded too ("acknowledged"), so a restart never takes that leg for one never
placed. After a crash, `settle` settles each leg of a request from what the
ledger recorded; an unsettled leg is settled by the executor from what the
venue knows — never sent again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from decimal import Decimal

import structlog

from connectors.types import Mode, decimal_text
from router.balances import BalanceBook, InsufficientBalance
from router.carry import load_carried, settled_fills
from router.errors import ExecutionError
from router.execution import Executor, LegOutcome, OrderLeg
from router.funding import leg_need
from router.ledger import Ledger, LegIntent
from router.live import LiveExecutor
from router.metrics import ORDER_LEG_SECONDS
from router.risk import RiskGate

log = structlog.get_logger(__name__)


class LegRunner:
    """Run legs exactly once through the executor, with every step durable in the ledger."""

    def __init__(
        self,
        ledger: Ledger,
        executor: Executor,
        risk: RiskGate,
        balances: BalanceBook,
        fee_bps: Callable[[str], Decimal],
    ) -> None:
        """Run legs through `executor`; `fee_bps(venue)` prices a buy leg's reserved fee."""
        self._ledger = ledger
        self._executor = executor
        self._risk = risk
        self._balances = balances
        self._fee_bps = fee_bps
        # Told the venue of every settled leg that filled (live: its balances are read again).
        self.on_fill: Callable[[str], None] | None = None
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

    async def _record_acknowledged(self, leg: OrderLeg, venue_order_id: str) -> None:
        await self._ledger.arecord_acknowledged(leg.request_id, leg.leg, venue_order_id)

    async def run(self, legs: Sequence[OrderLeg]) -> list[LegOutcome]:
        """Reserve every leg's funds, record its intent, execute them concurrently, record each outcome.

        When one leg cannot be funded none is sent: each is refused `insufficient_balance`.
        """
        try:
            self._reserve(legs)
        except InsufficientBalance as exc:
            return [LegOutcome(leg, (), f"not sent: {exc.message}", exc.reject_code) for leg in legs]
        # Intents and "sent" marks in one write: every leg is sent next (a crash now settles them
        # from the venue, as it would a leg marked sent alone; none is ever sent again).
        await self._ledger.arecord_leg_intents([intent_of(leg) for leg in legs], sent=True)
        # Every leg runs to its end before an error leaves: nothing of this request is still running
        # when the settler (router.settler) takes it over.
        done = await asyncio.gather(*(self._run_one(leg) for leg in legs), return_exceptions=True)
        outcomes = []
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
            outcomes.append(outcome)
        return outcomes

    async def run_held(self, hold: str, legs: Sequence[OrderLeg]) -> list[LegOutcome]:
        """`run` an order the risk gate accepted with `hold`, then release the hold: its fills count now.

        An outcome not known yet (ExecutionError) keeps the hold — the order may have filled — until
        the request is settled (`release_hold`).
        """
        try:
            outcomes = await self.run(legs)
        except ExecutionError:
            raise
        except BaseException:
            self._risk.release(hold)
            raise
        self._risk.release(hold)
        return outcomes

    def release_hold(self, hold: str) -> None:
        """Release a hold `run_held` kept: its request is settled, its fills are in the positions."""
        self._risk.release(hold)

    def _reserve(self, legs: Sequence[OrderLeg]) -> None:
        reserved: list[OrderLeg] = []
        try:
            for leg in legs:
                asset, amount = leg_need(
                    leg.symbol, leg.side, leg.quantity, leg.limit_price, self._fee_bps(leg.venue)
                )
                self._balances.reserve((leg.request_id, leg.leg), leg.venue, asset, amount)
                reserved.append(leg)
        except InsufficientBalance:
            for leg in reserved:
                self._balances.release((leg.request_id, leg.leg))
            raise

    async def _run_one(self, leg: OrderLeg) -> LegOutcome:
        started = time.monotonic()
        # An executor error leaves the leg in flight, its reservation held: the funds may be spent.
        outcome = await self._executor.execute(leg)
        ORDER_LEG_SECONDS.labels(venue=leg.venue).observe(time.monotonic() - started)
        await self._settled(leg, outcome)
        self._balances.settle((leg.request_id, leg.leg), leg.symbol, outcome.fills)
        if outcome.fills and self.on_fill is not None:
            self.on_fill(leg.venue)
        return outcome

    async def _settled(self, leg: OrderLeg, outcome: LegOutcome) -> None:
        await self._ledger.amark_leg(leg.request_id, leg.leg, "settled", outcome.encode())
        for fill in outcome.fills:
            self._risk.record_fill(leg.symbol, fill)

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
        await self._settled(leg, outcome)
        # The reservation its interrupted run held (none after a restart) goes; its fills move the book.
        self._balances.settle((leg.request_id, leg.leg), symbol, outcome.fills)
        if outcome.fills and self.on_fill is not None:
            self.on_fill(leg.venue)
        return outcome

    def restore_positions(self) -> int:
        """Feed every fill the ledger recorded into the risk gate, so positions survive a restart.

        The rebuild starts from the history retention carried forward (`router.carry`), then
        replays the fills still in the ledger, in claim order. On paper the fills move the balance
        book too (it starts from `[paper.balances]`); live balances are read from the venues, which
        already reflect them.
        """
        stored, legs = self._ledger.history()
        carried = load_carried(stored, self._risk.positions.currency)
        if carried is not None:  # what pruned requests' fills did (router.carry)
            self._risk.positions.carry_over(carried.book)
            if self.mode == "paper":
                for venue, moves in carried.balances.items():
                    self._balances.apply_moves(venue, moves)
        fills = self._count_fills(legs, watch=False)
        if fills:
            gross, _ = self._risk.positions.gross_exposure()
            log.info("positions_restored", fills=fills, gross_exposure=decimal_text(gross))
        self._risk.restored()
        return fills

    async def count_others_fills(self) -> int:
        """Count the fills other routers sharing the ledger made since the last call; return how many.

        They move the positions (and the loss guard) as this router's own do, and on paper the
        balance book; live balances are read from the venues, which already reflect them.
        """
        return self._count_fills(await self._ledger.afills_elsewhere(), watch=True)

    def _count_fills(self, legs: Sequence[tuple[bytes, LegIntent]], *, watch: bool) -> int:
        fills = settled_fills(legs)
        for symbol, fill in fills:
            self._risk.record_fill(symbol, fill, watch=False)
            if self.mode == "paper":
                self._balances.apply_fill(symbol, fill)
        if watch and fills:
            self._risk.restored()  # the loss guard, once over the new fills
        return len(fills)


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
