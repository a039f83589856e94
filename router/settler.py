"""The background settler: requests whose execution or settlement failed, settled later, answered then.

An error executing or settling one request — a venue that stays dark, an
outcome the venue cannot tell yet (`router.errors.ExecutionError`) — never
stops the router. The request stays claimed and in flight in the ledger, its
legs as recorded (a leg stays "sent" until the venue tells), and is not
answered now; `hold` records in the ledger that its result is owed
(`router.ledger.owed`) and hands it to the settler, and the router goes on with
the next request.

**Why the orders offset may be committed past it.** A request claimed in the
ledger and not completed is never executed again: any later delivery of it
finds its claim. Its result is owed by a durable row written before the router
returns from it, so before any commit. The settler retries settling it — from
what the ledger recorded and what the venue tells, through the same path as
recovery after a crash (`router.recovery`), never by sending again — with capped
exponential backoff, then stores the result (complete), publishes it keyed by
request_id, and only after the broker acknowledged it forgets the owed row. A
crash anywhere in between leaves the row: at the next start `resume` hands every
owed request back to the settler (settled ones only need publishing, with the
stored bytes). So every request is answered once settled, whatever is committed.

**A redelivery while its request is held** (a rebalance or a restart before the
commit) is answered with nothing: the settler owns the request and publishes
its one result; the router neither executes it again nor answers it with a
guess.

**On a shared ledger** the settler also answers the requests this router took
over from one whose lease expired (`take_over`, from `router.leases`), and
drops a request another router took over from it (`LeaseLost`): that one
answers it now.

Errors other than ExecutionError (the ledger failing, a bug) still stop the
router: nothing may execute without a working ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from router.errors import ExecutionError, LeaseLost, ResultNotPublished
from router.ledger import Ledger, OwedResult
from router.metrics import REQUESTS_UNSETTLED, SETTLE_ATTEMPTS

log = structlog.get_logger(__name__)

# settle(request_id, request bytes) → the stored result; raises ExecutionError while it cannot be told
Settle = Callable[[str, bytes], Awaitable[bytes]]
# publish(request_id, result) → once the results topic acknowledged it; raises ResultNotPublished
Publish = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """The pause before the n-th retry: `first_s` × 2ⁿ⁻¹, at most `max_s`."""

    first_s: float = 1.0
    max_s: float = 60.0

    def delay_s(self, attempts: int) -> float:
        """Return the pause after `attempts` failed tries (≥ 1)."""
        return float(min(self.first_s * 2.0 ** max(attempts - 1, 0), self.max_s))


@dataclass(slots=True)
class Unsettled:
    """A request the settler holds: in flight until settled, then owed until its result is published."""

    request_id: str
    request: bytes
    since_ns: int
    last_error: str
    attempts: int = 0  # settle attempts made by the settler (this run)
    failures: int = 0  # consecutive failed tries, which set the backoff
    result: bytes | None = None  # settled: only its publication remains
    due_s: float = 0.0  # monotonic time of the next try

    def as_status(self) -> dict[str, object]:
        """Return the /status view of this request."""
        return {
            "request_id": self.request_id,
            "since_ns": self.since_ns,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "settled": self.result is not None,
        }


class Settler:
    """Settle held requests in the background with capped exponential backoff; publish their results."""

    def __init__(
        self,
        ledger: Ledger,
        settle: Settle,
        *,
        backoff: Backoff | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """Settle through `settle` (the router's recovery of one request); time is injected for tests."""
        self._ledger = ledger
        self._settle = settle
        self.backoff = backoff or Backoff()
        self.monotonic = monotonic
        self.sleep = sleep
        self._clock_ns = clock_ns
        self._held: dict[str, Unsettled] = {}
        self._wake = asyncio.Event()

    def holds(self, request_id: str) -> bool:
        """Tell whether the settler owns `request_id` (a redelivery of it is answered with nothing)."""
        return request_id in self._held

    def unsettled(self) -> list[Unsettled]:
        """Return the held requests, oldest first."""
        return sorted(self._held.values(), key=lambda u: (u.since_ns, u.request_id))

    async def hold(self, request_id: str, request: bytes, error: str, *, since_ns: int | None = None) -> None:
        """Take over a claimed request whose settlement failed: its result is owed, durably, first."""
        since = self._clock_ns() if since_ns is None else since_ns
        await self._ledger.aowe(request_id, since_ns=since, error=error)
        held = self._held.get(request_id)
        if held is None:
            held = self._held[request_id] = Unsettled(request_id, request, since, error)
        held.failures += 1
        held.last_error = error
        delay = self.backoff.delay_s(held.failures)
        held.due_s = self.monotonic() + delay
        log.error("order_unsettled", request_id=request_id, error=error, retry_in_s=delay)
        self._count()
        self._wake.set()

    def resume(self) -> int:
        """Hold every result the ledger says is owed (a previous run's), to try at once; return how many."""
        for owed in self._ledger.owed():
            self.take_over(owed)
        self._count()
        if self._held:
            log.warning("settler_resumed", requests=len(self._held))
        return len(self._held)

    def take_over(self, owed: OwedResult) -> None:
        """Hold a request whose result is owed (durably, already), to try at once."""
        self._held[owed.request_id] = Unsettled(
            owed.request_id, owed.request, owed.since_ns, owed.error, result=owed.result
        )
        self._count()
        self._wake.set()

    async def run(self, stop: asyncio.Event, publish: Publish) -> None:
        """Try every held request when due, until `stop`; a new one wakes it."""
        while not stop.is_set():
            await self.step(publish)
            await self._wait(stop, self._next_due_s())

    async def step(self, publish: Publish) -> int:
        """Try every held request that is due once; return how many were answered."""
        answered = 0
        now = self.monotonic()
        for held in [h for h in self.unsettled() if h.due_s <= now]:
            answered += await self._try(held, publish)
        self._count()
        return answered

    async def _try(self, held: Unsettled, publish: Publish) -> int:
        if held.result is None:
            held.attempts += 1
            try:
                held.result = await self._settle(held.request_id, held.request)
            except ExecutionError as exc:
                return self._failed(held, "failed", str(exc))
            except LeaseLost as exc:  # another router took it over: it answers it now
                del self._held[held.request_id]
                log.warning("order_settle_handed_over", request_id=held.request_id, error=str(exc))
                return 0
        try:
            await publish(held.request_id, held.result)
        except ResultNotPublished as exc:
            return self._failed(held, "unpublished", f"result not published: {exc}")
        await self._ledger.aanswered(held.request_id)
        del self._held[held.request_id]
        SETTLE_ATTEMPTS.labels(outcome="settled").inc()
        log.warning("order_settled_late", request_id=held.request_id, attempts=held.attempts)
        return 1

    def _failed(self, held: Unsettled, outcome: str, error: str) -> int:
        held.failures += 1
        held.last_error = error
        delay = self.backoff.delay_s(held.failures)
        held.due_s = self.monotonic() + delay
        SETTLE_ATTEMPTS.labels(outcome=outcome).inc()
        log.warning("order_settle_failed", request_id=held.request_id, error=error, retry_in_s=delay)
        return 0

    def _next_due_s(self) -> float:
        """Return how long until the next held request is due (the longest backoff when none is held)."""
        if not self._held:
            return self.backoff.max_s
        return max(min(h.due_s for h in self._held.values()) - self.monotonic(), 0.0)

    async def _wait(self, stop: asyncio.Event, delay_s: float) -> None:
        """Return after `delay_s`, at `stop`, or when a new request is held, whichever comes first."""
        self._wake.clear()
        waits = [
            asyncio.ensure_future(self.sleep(delay_s)),
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(self._wake.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    def _count(self) -> None:
        REQUESTS_UNSETTLED.set(len(self._held))
