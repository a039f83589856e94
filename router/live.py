"""LiveExecutor: order legs as IOC LIMIT orders on the venues' REST APIs, never executed twice.

Each venue is a `connectors.trading.TradingVenue` (one signed client per
venue folder). Each leg is sent once, under its deterministic client order id
(`OrderLeg.client_order_id`, the same after any restart), after the router
recorded its intent in the ledger. Its quantity is rounded down to the lot
step and its limit price onto the tick grid in the requester's favour; a leg
that breaks the symbol's rules (minimum notional, ...) is refused unsent.

When the answer is lost — timeout, dropped connection, 5xx, the venue's
"unknown result" codes — the order may or may not exist, and several venues
accept a reused client id once the first order is terminal (Binance after a
fill; OKX and Kraken for any closed order), so re-sending could trade twice.
The executor queries the order by client id instead, with bounded backoff,
and settles from the venue's answer. "No such order" is believed only once
the venue's acceptance window (`acceptance_window_ms`: recvWindow, `expTime`,
`deadline`, the JWT's life; plus a margin) has passed since the send: from
then on the venue refuses the request as too old, so the order can no longer
appear. If the venue cannot tell within the query window, `ExecutionError`
propagates and the leg stays "sent" in the ledger, to be settled from the
venue later by the background settler (`router.settler`), or by `recover()`
at the next start — it is never guessed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import structlog

from connectors.errors import (
    DuplicateOrder,
    OrderAcknowledged,
    OrderNotFound,
    OutcomeUnknown,
    ParseError,
    VenueError,
)
from connectors.rest_metrics import LIVE_ORDERS, ORDER_ACK_SECONDS, ORDER_RECONCILIATIONS, TAKER_FEE_BPS
from connectors.trading import OrderReport, TradeFill, TradingVenue
from connectors.types import BPS, Mode, decimal_text
from router.errors import ExecutionError
from router.execution import Fill, LegOutcome, OrderLeg, quote_asset

log = structlog.get_logger(__name__)

_LATENCY_WEIGHT = 0.2  # of each new measurement in the moving average


@dataclass(frozen=True, slots=True)
class SettlePolicy:
    """How an unknown outcome is settled: the pauses between queries, and the clock-error margin."""

    query_delays_s: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
    finality_margin_ms: int = 1000


class LiveExecutor:
    """Execute legs on real venues through their REST connectors; settle every unknown by querying."""

    mode: Mode = "live"

    def __init__(
        self,
        connectors: Mapping[str, TradingVenue],
        *,
        taker_fee_bps: Mapping[str, Decimal] | None = None,
        policy: SettlePolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """Trade on each venue of `connectors`; `taker_fee_bps` estimates a fee the venue did not report."""
        self.connectors = dict(connectors)
        self.venues = frozenset(self.connectors)
        self.taker_fee_bps = dict(taker_fee_bps or {})
        self.policy = policy or SettlePolicy()
        self.sleep = sleep
        self.monotonic = monotonic
        self.clock_ns = clock_ns
        self._latency_ms: dict[str, float] = {}
        # Told of every leg a venue acknowledged before its state could be read (the router records it).
        self.on_acknowledged: Callable[[OrderLeg, str], Awaitable[None]] | None = None

    async def start(self) -> None:
        """Connect every venue (clock offset, exchange rules) before the first request."""
        for connector in self.connectors.values():
            await connector.start()

    async def close(self) -> None:
        """Close every venue connection."""
        for connector in self.connectors.values():
            await connector.close()

    async def account_taker_fees(self, symbols: Mapping[str, Sequence[str]]) -> dict[str, Decimal]:
        """Return each venue's actual taker fee in bps, read from the venue, and price with it from now on.

        A venue's fee is the highest among its `symbols` (a pair can have its own tier);
        a venue that cannot tell keeps its configured fee, which this does not return.
        """
        fees: dict[str, Decimal] = {}
        for venue, connector in self.connectors.items():
            known: list[Decimal] = []
            for symbol in symbols.get(venue, ()):
                try:
                    fee = await connector.taker_fee_bps(symbol)
                except (VenueError, ParseError) as exc:
                    log.warning("taker_fee_unavailable", venue=venue, symbol=symbol, error=str(exc))
                    continue
                if fee is not None:
                    known.append(fee)
            if known:
                fees[venue] = self.taker_fee_bps[venue] = max(known)
            if venue in self.taker_fee_bps:
                TAKER_FEE_BPS.labels(venue).set(float(self.taker_fee_bps[venue]))
            log.info("taker_fee", venue=venue, fee_bps=str(self.taker_fee_bps.get(venue)), read=bool(known))
        return fees

    def observed_ack_latency_ms(self, venue: str) -> float | None:
        """Return the moving average of the venue's order-acknowledgement round trips."""
        return self._latency_ms.get(venue)

    async def execute(self, leg: OrderLeg) -> LegOutcome:
        """Send `leg` once as an IOC LIMIT order and report its fills; settle an unknown by query."""
        venue = self.connectors.get(leg.venue)
        if venue is None:
            return self._not_sent(leg, f"{leg.venue} is not a live venue")
        try:
            rules = await venue.symbol_rules(leg.symbol)
            quantity, price = rules.prepare(leg.side, leg.quantity, leg.limit_price)
        except (VenueError, ParseError) as exc:
            return self._not_sent(leg, str(exc))
        started = time.monotonic()
        log.info(
            "order_sending",
            request_id=leg.request_id,
            venue=leg.venue,
            client_order_id=leg.client_order_id,
            quantity=decimal_text(quantity),
            price=decimal_text(price),
        )
        try:
            report = await venue.place_order(leg.symbol, leg.side, quantity, price, leg.client_order_id)
        except DuplicateOrder:
            # Our own deterministic id is open on the venue: this leg was sent before. Settle it.
            LIVE_ORDERS.labels(leg.venue, "unknown").inc()
            return await self._settle(venue, leg, self._finality(venue))
        except OrderAcknowledged as exc:
            # The venue took it: it exists, so "not found" only means "not visible yet", never "not placed".
            LIVE_ORDERS.labels(leg.venue, "unknown").inc()
            log.warning("order_acknowledged_unseen", client_order_id=leg.client_order_id, error=str(exc))
            if self.on_acknowledged is not None:
                await self.on_acknowledged(leg, exc.venue_order_id)  # durable first: a restart must know it
            return await self._settle(venue, leg, math.inf)
        except OutcomeUnknown as exc:
            LIVE_ORDERS.labels(leg.venue, "unknown").inc()
            log.warning("order_outcome_unknown", client_order_id=leg.client_order_id, error=str(exc))
            return await self._settle(venue, leg, self._finality(venue))
        except VenueError as exc:
            LIVE_ORDERS.labels(leg.venue, "rejected").inc()
            log.warning("order_rejected", client_order_id=leg.client_order_id, error=str(exc))
            return LegOutcome(leg, (), f"{leg.venue} did not execute the order: {exc}", "venue_error")
        self._record_latency(leg.venue, (time.monotonic() - started) * 1000)
        LIVE_ORDERS.labels(leg.venue, "accepted").inc()
        return await self._outcome(venue, leg, report)

    async def recover(self, leg: OrderLeg, *, acknowledged: bool = False) -> LegOutcome:
        """Settle a leg an earlier run left unsettled from what the venue says; never send it."""
        venue = self.connectors.get(leg.venue)
        if venue is None:
            # Live mode routes only to live venues: a leg elsewhere comes from a paper run.
            return LegOutcome(leg, (), f"{leg.venue} is not a live venue: never sent live, not executed")
        # An acknowledged order exists: only the venue showing it settles it, never the window passing.
        not_before = math.inf if acknowledged else self._finality(venue)
        outcome = await self._settle(venue, leg, not_before)
        log.warning(
            "order_recovered", client_order_id=leg.client_order_id, filled=decimal_text(outcome.filled)
        )
        return outcome

    def _finality(self, venue: TradingVenue) -> float:
        """Return when (monotonic s) the venue refuses any copy of an order sent until now as too old.

        The venue's clock runs at our pace, so "the acceptance window after the send" needs no
        clock offset; the margin covers the error of the timestamp we signed with.
        """
        return self.monotonic() + (venue.acceptance_window_ms + self.policy.finality_margin_ms) / 1000

    async def _settle(self, venue: TradingVenue, leg: OrderLeg, not_before: float) -> LegOutcome:
        """Query the order by client id until the venue gives a final answer; never re-send."""
        delays = self.policy.query_delays_s
        for attempt in range(len(delays) + 1):
            pause = delays[min(attempt, len(delays) - 1)]
            try:
                report = await venue.query_order(leg.symbol, leg.client_order_id)
            except OrderNotFound:
                remaining = not_before - self.monotonic()
                if remaining == math.inf:  # acknowledged: keep querying on the usual schedule
                    remaining = pause
                elif remaining <= 0:
                    ORDER_RECONCILIATIONS.labels(leg.venue, "not_found").inc()
                    log.warning("order_not_found", client_order_id=leg.client_order_id)
                    return LegOutcome(
                        leg,
                        (),
                        f"{leg.venue} has no order {leg.client_order_id}: never accepted, not executed",
                    )
                pause = remaining  # a late copy could still be accepted until then
            except (VenueError, ParseError) as exc:
                ORDER_RECONCILIATIONS.labels(leg.venue, "failed").inc()
                log.warning("order_query_failed", client_order_id=leg.client_order_id, error=str(exc))
            else:
                if not report.is_open:
                    ORDER_RECONCILIATIONS.labels(leg.venue, "found").inc()
                    return await self._outcome(venue, leg, report)
                await self._cancel(venue, leg)
                pause = 0.0
            if attempt < len(delays):
                await self.sleep(pause)
        raise ExecutionError(
            f"{leg.venue} order {leg.client_order_id}: outcome still unknown after {len(delays) + 1} "
            "queries; the leg stays in flight and is settled from the venue later"
        )

    async def _cancel(self, venue: TradingVenue, leg: OrderLeg) -> None:
        # An IOC order rests only for an instant; one found open is cancelled so it can be settled.
        try:
            await venue.cancel_order(leg.symbol, leg.client_order_id)
        except OrderNotFound:
            return  # it finished meanwhile
        except (VenueError, ParseError) as exc:
            log.warning("order_cancel_failed", client_order_id=leg.client_order_id, error=str(exc))

    async def _outcome(self, venue: TradingVenue, leg: OrderLeg, report: OrderReport) -> LegOutcome:
        if report.is_open:
            await self._cancel(venue, leg)
            return await self._settle(venue, leg, not_before=0.0)
        trades = report.fills
        if not trades and report.executed_qty > 0:
            trades = await self._trades(venue, leg, report)
        fills = tuple(self._fill(leg, report, t) for t in trades) if trades else self._estimated(leg, report)
        if fills:
            return LegOutcome(leg, fills)
        return LegOutcome(
            leg,
            (),
            f"no {leg.venue} liquidity within limit {decimal_text(report.price)} "
            f"(IOC order {report.client_order_id} {report.status.lower()}, nothing filled)",
        )

    async def _trades(self, venue: TradingVenue, leg: OrderLeg, report: OrderReport) -> tuple[TradeFill, ...]:
        try:
            trades = await venue.order_trades(leg.symbol, report)
        except (VenueError, ParseError) as exc:
            log.warning("order_trades_unavailable", client_order_id=leg.client_order_id, error=str(exc))
            return ()
        if sum((t.quantity for t in trades), Decimal(0)) != report.executed_qty:
            return ()  # the trade list lags the order: fall back to the order's totals
        return trades

    def _fill(self, leg: OrderLeg, report: OrderReport, trade: TradeFill) -> Fill:
        return Fill(
            venue=leg.venue,
            side=leg.side,
            price=trade.price,
            quantity=trade.quantity,
            fee=trade.fee,
            fee_asset=trade.fee_asset,
            client_order_id=report.client_order_id,
            venue_order_id=report.venue_order_id,
            ts_ns=_ts_ns(trade.time_ms or report.time_ms, self.clock_ns()),
        )

    def _estimated(self, leg: OrderLeg, report: OrderReport) -> tuple[Fill, ...]:
        price = report.average_price
        if price is None:
            return ()
        fee = report.cumulative_quote_qty * self.taker_fee_bps.get(leg.venue, Decimal(0)) / BPS
        log.warning("fill_fee_estimated", client_order_id=leg.client_order_id, fee=decimal_text(fee))
        fill = Fill(
            venue=leg.venue,
            side=leg.side,
            price=price,
            quantity=report.executed_qty,
            fee=fee,
            fee_asset=quote_asset(leg.symbol),
            client_order_id=report.client_order_id,
            venue_order_id=report.venue_order_id,
            ts_ns=_ts_ns(report.time_ms, self.clock_ns()),
        )
        return (fill,)

    def _not_sent(self, leg: OrderLeg, reason: str) -> LegOutcome:
        LIVE_ORDERS.labels(leg.venue, "not_sent").inc()
        log.warning("order_not_sent", client_order_id=leg.client_order_id, reason=reason)
        return LegOutcome(leg, (), f"not sent to {leg.venue}: {reason}", "venue_error")

    def _record_latency(self, venue: str, latency_ms: float) -> None:
        previous = self._latency_ms.get(venue)
        average = latency_ms if previous is None else previous + _LATENCY_WEIGHT * (latency_ms - previous)
        self._latency_ms[venue] = average
        ORDER_ACK_SECONDS.labels(venue).set(average / 1000)


def _ts_ns(time_ms: int | None, fallback_ns: int) -> int:
    """Return a venue time in ms as ns since the epoch, or `fallback_ns` when the venue gave none."""
    return fallback_ns if time_ms is None else time_ms * 1_000_000
