"""The lease keeper: on a shared ledger, keep this router's claims and pick up those of a router gone.

Every `interval_s` (a third of `[router] lease_ms`) it renews the lease of
every request this router holds (in flight, result owed, residual open), then
takes over the requests whose lease expired — their router was killed, is
paused, or lost the database for longer than a lease — unless this process is
answering them right now. A request taken over is handed to the settler
(`router.settler`), which settles it from the ledger and the venue, never by
sending again, and publishes its result; a residual taken over is worked by
this router's residual worker from then on. Last, the fills other routers
made since the previous step move this router's positions (`router.risk`):
positions, exposure and the loss guard are global, each router's view at most
one step old; and `[risk] max_orders_per_second`, the desk's limit, is split
between the routers alive (`router.risk.RiskGate.routers`).

A renewal that fails (the database unreachable) is counted and logged and
tried again next time: if it stays down longer than a lease, other routers
take this one's requests over, and this one's next write on each is refused
(`LeaseLost`), so it acts on none of them again.

On the SQLite ledger leases never expire and the keeper does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from router.errors import LedgerError
from router.ledger import Ledger
from router.legs import LegRunner
from router.metrics import LEASE_RENEWAL_FAILURES, LEASES_TAKEN_OVER
from router.risk import RiskGate
from router.settler import Settler

log = structlog.get_logger(__name__)


class LeaseKeeper:
    """Renew this router's leases and take over expired ones, every third of a lease."""

    def __init__(
        self, ledger: Ledger, settler: Settler, busy: Callable[[str], bool], legs: LegRunner, risk: RiskGate
    ) -> None:
        """Keep `ledger`'s leases; hand what is taken over to `settler`; skip what is `busy` here.

        `legs` counts the fills other routers made (global positions); `risk` gets its share of
        the order rate.
        """
        self._ledger = ledger
        self._legs = legs
        self._risk = risk
        self._settler = settler
        self._busy = busy
        ttl_ms = ledger.lease.ttl_ms
        self.interval_s = None if ttl_ms is None else ttl_ms / 3000

    async def step(self) -> int:
        """Renew, then take over what expired; return how many requests were taken over."""
        try:
            await self._ledger.arenew_leases()
            taken = await self._ledger.atake_over_expired(
                lambda request_id: self._busy(request_id) or self._settler.holds(request_id)
            )
            await self._legs.count_others_fills()
            self._risk.routers = await self._ledger.arouters_alive()
        except LedgerError as exc:
            LEASE_RENEWAL_FAILURES.inc()
            log.error("ledger_leases_not_renewed", error=str(exc))
            return 0
        for owed in taken:
            self._settler.take_over(owed)
            log.warning("order_taken_over", request_id=owed.request_id, detail=owed.error)
        LEASES_TAKEN_OVER.inc(len(taken))
        return len(taken)

    async def run(self, stop: asyncio.Event) -> None:
        """Step every `interval_s` until `stop`; return at once when leases never expire (SQLite)."""
        if self.interval_s is None:
            return
        while not stop.is_set():
            await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
