"""Open orders the ledger does not know: looked for at start and every interval, reported, never touched.

Every order smartroute sends is recorded in the ledger, with its client order id, before it
is sent. So an order open at a venue is smartroute's in-flight leg only if the ledger holds
that client id for that venue as not yet settled. Anything else is reported:

- `unknown`: the ledger has no such client id — an operator placed it by hand, another
  system trades on the account, or a ledger was lost;
- `settled`: the ledger holds it as final, yet the venue still lists it open (checked again
  by a query, since a leg may settle between the listing and the look-up).

Either way the router's view of the account is incomplete: the order holds funds and may fill
into a position nobody planned. Each is reported — a structured log line
`unknown_venue_order` (venue, symbol, client and venue ids, side, quantity), the gauge
`smartroute_unknown_venue_orders{venue}` and the daemon's `/status` — on every pass while it
stays open. None is ever cancelled: an operator may have placed it on purpose, and cancelling
someone else's order is a trading decision, not a repair. A venue that cannot list its orders
keeps its last findings, is counted (`smartroute_open_orders_check_failures_total{venue}`)
and says why in `/status`.

Paper mode sends nothing to any venue: there is nothing to reconcile, and no check runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

import structlog

from connectors.errors import OrderNotFound, ParseError, VenueError
from connectors.trading import OrderReport, TradingVenue
from connectors.types import Side, decimal_text
from router.ledger import LegIntent
from router.metrics import OPEN_ORDER_CHECK_FAILURES, UNKNOWN_VENUE_ORDERS

log = structlog.get_logger(__name__)

Finding = Literal["unknown", "settled"]


class SentLegs(Protocol):
    """What the check asks the ledger: the leg sent under a client order id, if any."""

    def leg_by_client_order_id(self, client_order_id: str) -> LegIntent | None:
        """Return the leg recorded under `client_order_id`, or None."""
        ...


@dataclass(frozen=True, slots=True)
class UnknownOrder:
    """An order open at a venue that is not one of the router's legs in flight."""

    venue: str
    symbol: str
    client_order_id: str
    venue_order_id: str
    side: Side
    quantity: Decimal
    executed_quantity: Decimal
    price: Decimal
    status: str  # the venue's own word
    finding: Finding

    def as_message(self) -> dict[str, str]:
        """Return the order as the log line and /status show it."""
        return {
            "venue": self.venue,
            "symbol": self.symbol,
            "client_order_id": self.client_order_id,
            "venue_order_id": self.venue_order_id,
            "side": self.side,
            "quantity": decimal_text(self.quantity),
            "executed_quantity": decimal_text(self.executed_quantity),
            "price": decimal_text(self.price),
            "status": self.status,
            "finding": self.finding,
        }


@dataclass(frozen=True, slots=True)
class VenueCheck:
    """The latest pass over one venue's open orders."""

    venue: str
    checked_ns: int
    open_orders: int
    unknown: tuple[UnknownOrder, ...]
    error: str | None = None  # this pass could not list the orders; `unknown` is the previous pass's

    def as_status(self) -> dict[str, object]:
        """Return the pass as /status shows it."""
        return {
            "checked_ns": self.checked_ns,
            "open_orders": self.open_orders,
            "unknown": [order.as_message() for order in self.unknown],
            "error": self.error,
        }


class OpenOrderCheck:
    """Compare each live venue's open orders with the ledger; report what it does not know."""

    def __init__(
        self,
        venues: Mapping[str, TradingVenue],
        ledger: SentLegs,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._venues = dict(venues)
        self._ledger = ledger
        self._clock_ns = clock_ns
        self._latest: dict[str, VenueCheck] = {}

    async def check(self) -> dict[str, VenueCheck]:
        """Check every venue once; return (and keep for `status`) each venue's findings."""
        for venue, client in sorted(self._venues.items()):
            self._latest[venue] = await self._check_venue(venue, client)
        return dict(self._latest)

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Check every `interval_s` until `stop` is set (the start's check is the caller's)."""
        while not stop.is_set():
            try:
                async with asyncio.timeout(interval_s):
                    await stop.wait()
                return
            except TimeoutError:
                await self.check()

    def status(self) -> dict[str, object]:
        """Return the latest findings by venue, for /status."""
        return {venue: found.as_status() for venue, found in sorted(self._latest.items())}

    async def _check_venue(self, venue: str, client: TradingVenue) -> VenueCheck:
        try:
            listed = await client.open_orders()
        except (VenueError, ParseError) as exc:
            OPEN_ORDER_CHECK_FAILURES.labels(venue=venue).inc()
            log.warning("open_orders_unavailable", venue=venue, error=str(exc))
            previous = self._latest.get(venue)
            kept = () if previous is None else previous.unknown
            return VenueCheck(venue, self._clock_ns(), 0, kept, error=str(exc))
        unknown = []
        for report in listed:
            finding = await self._finding(venue, client, report)
            if finding is not None:
                unknown.append(_unknown(venue, report, finding))
        for order in unknown:
            log.warning("unknown_venue_order", **order.as_message())
        UNKNOWN_VENUE_ORDERS.labels(venue=venue).set(len(unknown))
        log.info("open_orders_checked", venue=venue, open_orders=len(listed), unknown=len(unknown))
        return VenueCheck(venue, self._clock_ns(), len(listed), tuple(unknown))

    async def _finding(self, venue: str, client: TradingVenue, report: OrderReport) -> Finding | None:
        """Say why an open order is not a leg in flight, or None when it is one."""
        leg = self._ledger.leg_by_client_order_id(report.client_order_id)
        if leg is None or leg.venue != venue:
            return "unknown"
        if leg.state != "settled":
            return None  # a leg being executed now: the router is working on it
        try:  # settled since the venue listed it? Ask for the order itself.
            current = await client.query_order(report.symbol, report.client_order_id)
        except OrderNotFound:
            return None
        except (VenueError, ParseError) as exc:
            log.warning(
                "open_order_query_failed", venue=venue, client_order_id=report.client_order_id, error=str(exc)
            )
            return "settled"
        return "settled" if current.is_open else None


def _unknown(venue: str, report: OrderReport, finding: Finding) -> UnknownOrder:
    return UnknownOrder(
        venue=venue,
        symbol=report.symbol,
        client_order_id=report.client_order_id,
        venue_order_id=report.venue_order_id,
        side=report.side,
        quantity=report.orig_qty,
        executed_quantity=report.executed_qty,
        price=report.price,
        status=report.status,
        finding=finding,
    )
