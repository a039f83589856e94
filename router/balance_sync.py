"""BalanceSync: live balances read from each venue at start, after fills and periodically, drift reported.

Each read compares the venue's free balance of every watched asset (the base and
quote assets of the venue's symbols) with what the balance book expects, and
adopts the venue's figure — the venue is the truth for what can be spent. A
difference beyond the tolerance (`[router] balance_tolerance_bps` of the larger
of the two) is never adopted silently: it is logged (`balance_drift`), counted
(`smartroute_balance_drift_total{venue,asset}`) and kept for `/status`.

A venue with a leg in flight is not compared (its balance is moving), nor is
one whose book changed while its balances were being read: the next read does
it. A venue not read yet has nothing available, so no leg is sent there until
its balances are known. Reads after fills run in the background, never in an
order's path.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Final

import structlog

from connectors.errors import ParseError, VenueError
from connectors.trading import TradingVenue
from connectors.types import decimal_text
from router.balances import BalanceBook, Drift
from router.metrics import BALANCE_DRIFT, BALANCE_READS

log = structlog.get_logger(__name__)

KEPT_DRIFTS: Final = 50
_AFTER_FILL_S: Final = 0.5  # let the venue book a fill before its balance is read


class BalanceSync:
    """Keep a live balance book in step with the venues' accounts, reporting every drift."""

    def __init__(
        self,
        book: BalanceBook,
        venues: Mapping[str, TradingVenue],
        assets: Mapping[str, frozenset[str]],
        *,
        tolerance_bps: Decimal,
        refresh_s: float,
        after_fill_s: float = _AFTER_FILL_S,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """Read `venues`' balances of their watched `assets` into `book` every `refresh_s` and after fills."""
        self.book = book
        self.venues = dict(venues)
        self.assets = dict(assets)
        self.tolerance_bps = tolerance_bps
        self.refresh_s = refresh_s
        self.after_fill_s = after_fill_s
        self.clock_ns = clock_ns
        self.drifts: deque[Drift] = deque(maxlen=KEPT_DRIFTS)
        self.errors: dict[str, str] = {}  # the last failed read of each venue, until one succeeds
        self._filled: set[str] = set()
        self._fill_seen = asyncio.Event()

    def fill_seen(self, venue: str) -> None:
        """Note that a leg filled on `venue`: its balances are read again shortly, in the background."""
        if venue in self.venues:
            self._filled.add(venue)
            self._fill_seen.set()

    async def refresh(self, venues: Iterable[str] | None = None) -> list[Drift]:
        """Read and reconcile `venues` (default: all); return the drifts found."""
        found: list[Drift] = []
        for venue in sorted(self.venues if venues is None else venues):
            found += await self._refresh_one(venue)
        return found

    async def _refresh_one(self, venue: str) -> list[Drift]:
        if self.book.busy(venue):
            BALANCE_READS.labels(venue=venue, outcome="skipped").inc()
            return []  # a leg is moving its balances: compare once it settled
        version = self.book.version(venue)
        try:
            balances = await self.venues[venue].balances()
        except (VenueError, ParseError) as exc:
            BALANCE_READS.labels(venue=venue, outcome="failed").inc()
            self.errors[venue] = str(exc)
            log.warning("balance_read_failed", venue=venue, error=str(exc), synced=self.book.synced(venue))
            return []
        if self.book.version(venue) != version:
            BALANCE_READS.labels(venue=venue, outcome="skipped").inc()
            return []  # a leg started or settled during the read: its figures may predate it
        self.errors.pop(venue, None)
        watched = self.assets.get(venue, frozenset())
        zero = Decimal(0)
        observed = {asset: balances[asset].free if asset in balances else zero for asset in watched}
        first = not self.book.synced(venue)
        drifts = self.book.reconcile(venue, observed, self.tolerance_bps, now_ns=self.clock_ns())
        BALANCE_READS.labels(venue=venue, outcome="read").inc()
        if first:
            log.info(
                "balances_read", venue=venue, **{a: decimal_text(v) for a, v in sorted(observed.items())}
            )
        for drift in drifts:
            BALANCE_DRIFT.labels(venue=venue, asset=drift.asset).inc()
            self.drifts.append(drift)
            log.warning(
                "balance_drift",
                venue=venue,
                asset=drift.asset,
                expected=decimal_text(drift.expected),
                observed=decimal_text(drift.observed),
                tolerance_bps=decimal_text(self.tolerance_bps),
            )
        return drifts

    async def run(self) -> None:
        """Read every venue each `refresh_s`, and a venue `after_fill_s` after a leg filled there."""
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.refresh_s
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_full - loop.time())):
                    await self._fill_seen.wait()
            except TimeoutError:
                await self.refresh()
                next_full = loop.time() + self.refresh_s
                continue
            await asyncio.sleep(self.after_fill_s)
            self._fill_seen.clear()
            venues, self._filled = self._filled, set()
            await self.refresh(venues)

    def as_status(self) -> dict[str, object]:
        """Return the /status view of the reads: recent drifts and the venues whose last read failed."""
        return {
            "tolerance_bps": decimal_text(self.tolerance_bps),
            "refresh_ms": round(self.refresh_s * 1000),
            "drifts": [drift.as_status() for drift in self.drifts],
            "read_errors": dict(sorted(self.errors.items())),
        }
