"""Readiness: whether this smartroute process can be counted on now, and if not, why.

The rule /readyz answers (`assess`):

    ready  ⇔  start-up is done
           ∧  Kafka is reachable (the latest broker probe succeeded)
           ∧  the router has reconciled its in-flight orders, or no router runs in this process
           ∧  at least one enabled venue is fresh

A venue is *fresh* when its feed is streaming and its newest cached quote is no older than the
decision limit (`cache.max_quote_age_ms`): it contributes to decisions right now. Every enabled
venue that is not fresh is reported under `degraded_venues`, as `stale` (connected, but no
fresh quote) or `down` (not connected), with its newest quote's age. A degraded venue does not
block readiness while another venue is fresh: the detector and the router skip it by
themselves, and one exchange's outage must not take the whole process out of service. With
no fresh venue at all there is nothing to decide on, so the process is not ready.

Everything here is pure except `BrokerWatch.run` and its probe (`daemon.kafka.KafkaMetadataProbe`),
the I/O that feeds the broker input; the clock is injected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import structlog

from daemon.kafka import KafkaError
from router.cache import CachedQuote

log = structlog.get_logger(__name__)

VenueState = Literal["fresh", "stale", "down"]
RouterState = Literal["reconciled", "reconciling", "not_running"]
NotReadyReason = Literal["starting", "kafka_unreachable", "router_reconciling", "no_fresh_venue"]

_NS_PER_MS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class VenueHealth:
    """One enabled venue: its freshness and the age of its newest cached quote (None: no quote yet)."""

    state: VenueState
    quote_age_ms: float | None


@dataclass(frozen=True, slots=True)
class BrokerHealth:
    """Whether Kafka answered the latest probe, since when (monotonic seconds), and the last error."""

    reachable: bool
    since_s: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Readiness:
    """The verdict of `assess`: ready or not, the blocking reasons, and what was looked at."""

    ready: bool
    not_ready: tuple[NotReadyReason, ...]
    detail: Mapping[str, Any]

    def as_response(self) -> tuple[bool, dict[str, Any]]:
        """Return (ready, reasons) in the shape `daemon.http.HttpServer` serves on /readyz."""
        return self.ready, {"not_ready": list(self.not_ready), **self.detail}


def classify_venue(*, streaming: bool, quote_age_ms: float | None, max_quote_age_ms: float) -> VenueState:
    """Return `fresh`, `stale` or `down` for one venue (see the module doc)."""
    if not streaming:
        return "down"
    if quote_age_ms is None or quote_age_ms > max_quote_age_ms:
        return "stale"
    return "fresh"


def venue_health(
    feed_states: Mapping[str, str], entries: Iterable[CachedQuote], *, now_ns: int, max_quote_age_ms: float
) -> dict[str, VenueHealth]:
    """Classify every venue of `feed_states` (venue → feed state) from the cache's entries at `now_ns`."""
    newest: dict[str, int] = {}
    for entry in entries:
        venue = entry.quote.venue
        if entry.stored_ns > newest.get(venue, -1):
            newest[venue] = entry.stored_ns
    health: dict[str, VenueHealth] = {}
    for venue, state in feed_states.items():
        stored = newest.get(venue)
        age_ms = None if stored is None else (now_ns - stored) / _NS_PER_MS
        freshness = classify_venue(
            streaming=state == "streaming", quote_age_ms=age_ms, max_quote_age_ms=max_quote_age_ms
        )
        health[venue] = VenueHealth(freshness, None if age_ms is None else round(age_ms, 3))
    return health


def assess(
    *,
    started: bool,
    broker: BrokerHealth,
    venues: Mapping[str, VenueHealth],
    router: RouterState,
    now_s: float,
) -> Readiness:
    """Decide readiness from its inputs (see the module doc for the rule); `now_s` is the broker clock."""
    fresh = sorted(v for v, h in venues.items() if h.state == "fresh")
    degraded = {
        v: {"state": h.state, "quote_age_ms": h.quote_age_ms}
        for v, h in sorted(venues.items())
        if h.state != "fresh"
    }
    blocking: list[NotReadyReason] = []
    if not started:
        blocking.append("starting")
    if not broker.reachable:
        blocking.append("kafka_unreachable")
    if router == "reconciling":
        blocking.append("router_reconciling")
    if not fresh:
        blocking.append("no_fresh_venue")
    detail = {
        "kafka": {
            "reachable": broker.reachable,
            "for_s": round(max(0.0, now_s - broker.since_s), 3),
            "error": broker.error,
        },
        "router": router,
        "fresh_venues": fresh,
        "degraded_venues": degraded,
    }
    return Readiness(not blocking, tuple(blocking), detail)


class BrokerProbe(Protocol):
    """One check that the Kafka cluster answers; raises KafkaError, OSError or TimeoutError if not."""

    async def check(self) -> None:
        """Return once the cluster answered."""

    async def close(self) -> None:
        """Release the probe's connections; idempotent."""


class BrokerWatch:
    """Keep `BrokerHealth` current from a probe run every `interval_s`, each bounded by `timeout_s`."""

    def __init__(
        self,
        probe: BrokerProbe,
        *,
        interval_s: float = 2.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not interval_s > 0 or not timeout_s > 0:
            raise ValueError(f"interval_s and timeout_s must be positive, got {interval_s}, {timeout_s}")
        self._probe = probe
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self.clock = clock
        self._sleep = sleep
        self._health = BrokerHealth(reachable=False, since_s=clock(), error="not probed yet")

    @property
    def health(self) -> BrokerHealth:
        """Return what the latest probe found."""
        return self._health

    def record(self, error: str | None) -> BrokerHealth:
        """Record one probe outcome (None: it answered); log and restart `since_s` on a change."""
        reachable = error is None
        if reachable != self._health.reachable:
            since = self.clock()
            if reachable:
                log.info("kafka_reachable")
            else:
                log.warning("kafka_unreachable", error=error)
        else:
            since = self._health.since_s
        self._health = BrokerHealth(reachable, since, error)
        return self._health

    async def run(self) -> None:
        """Probe until cancelled; close the probe on the way out."""
        try:
            while True:
                try:
                    async with asyncio.timeout(self._timeout_s):
                        await self._probe.check()
                except (KafkaError, OSError, TimeoutError) as exc:
                    self.record(repr(exc))
                else:
                    self.record(None)
                await self._sleep(self._interval_s)
        finally:
            await self._probe.close()
