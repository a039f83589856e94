"""Ledger retention: prune answered requests older than `[router] ledger_retention_ms`, in the background.

At start and then every `interval_s` (an hour), the pruner deletes the requests
answered more than the retention ago — with their legs, acknowledgements and
finished residuals — oldest claim first, never one in flight, with a leg not
settled, an open residual or an owed result (`router.ledger.retention` gives
the rule, and why only a prefix of the claim order goes). Their fills are
folded into the ledger's carried history in the same transaction
(`router.carry`), so positions, paper balances and the day's realized PnL
rebuilt at the next start are the same as without the prune.

Off the order path: the prune runs in a worker thread on its own connection to
the ledger, in chunks of `chunk` requests, each one short transaction,
with a pause between chunks so the router's own writes (which wait on SQLite's
busy timeout, 5 s) get the lock between them.

Dedupe needs the ledger to keep a request as long as it can be redelivered:
`daemon.config` refuses a retention shorter than the orders topic's retention
plus `max_request_age_ms` (README "Ledger retention").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from router.carry import fold
from router.ledger import Lease, Ledger, Store
from router.metrics import LEDGER_PRUNED

log = structlog.get_logger(__name__)

_HOUR_S = 3600.0
_CHUNK = 200
_PAUSE_S = 0.05  # between chunks: the event loop's writes get the lock


def prune_ledger(
    where: Path | Store,
    older_than_ns: int,
    currency: str,
    *,
    chunk: int = _CHUNK,
    pause_s: float = 0.0,
    stopping: Callable[[], bool] = lambda: False,
    lease: Lease | None = None,
) -> int:
    """Prune the ledger at `where` down to requests answered since `older_than_ns`; return how many went.

    Blocking: opens its own connection (run it in a thread, as `LedgerPruner` does). Stops
    between two chunks once `stopping()` is true.
    """
    pruned = 0
    with Ledger(where, lease) as ledger:
        while not stopping() and (deleted := ledger.prune_done(older_than_ns, fold(currency), limit=chunk)):
            pruned += deleted
            LEDGER_PRUNED.inc(deleted)
            if deleted < chunk:
                break
            time.sleep(pause_s)
    return pruned


class LedgerPruner:
    """Prune the ledger on a schedule, in a worker thread."""

    def __init__(
        self,
        where: Path | Store,
        retention_ms: int,
        currency: str,
        *,
        interval_s: float = _HOUR_S,
        clock_ns: Callable[[], int] = time.time_ns,
        lease: Lease | None = None,
    ) -> None:
        """Keep `retention_ms` of answered requests in the ledger at `where`; `currency` values carried PnL.

        `lease` is the router's (a shared ledger is opened as its owner; the pruner claims nothing).
        """
        if retention_ms < 1:
            raise ValueError(f"retention_ms must be >= 1, got {retention_ms}")
        self.where = where
        self.lease = lease
        self.retention_ms = retention_ms
        self.currency = currency
        self.interval_s = interval_s
        self._clock_ns = clock_ns

    async def prune(self, stop: asyncio.Event | None = None) -> int:
        """Prune once now, in a worker thread (until `stop`); return how many requests were deleted."""
        older_than_ns = self._clock_ns() - self.retention_ms * 1_000_000
        started = time.monotonic()
        stopping = (lambda: False) if stop is None else stop.is_set
        pruned = await asyncio.to_thread(
            prune_ledger,
            self.where,
            older_than_ns,
            self.currency,
            pause_s=_PAUSE_S,
            stopping=stopping,
            lease=self.lease,
        )
        log.info("ledger_retention", pruned=pruned, seconds=round(time.monotonic() - started, 3))
        return pruned

    async def run(self, stop: asyncio.Event) -> None:
        """Prune at start, then every `interval_s`, until `stop`."""
        while not stop.is_set():
            await self.prune(stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
