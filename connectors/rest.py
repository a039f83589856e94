"""What every venue's signed REST client shares: one aiohttp session with safe error mapping,
a clock offset to the venue, and a throttle driven by what the venue says.

    session = RestSession("okx", "https://www.okx.com", timeout_s=10)
    response = await session.request("POST", "/api/v5/trade/order", body=b"...", headers={...},
                                     action="place order", may_execute=True)

Transport failures become the project's errors (`connectors.errors`) by one rule:
only a failure to open the connection proves nothing was sent (`VenueUnreachable`);
a timeout, a dropped connection or an unreadable answer after the request may
have left is `OutcomeUnknown` when the request `may_execute` (an order), and a
plain `VenueConnectionError` otherwise. A foreign error is never chained: its
text may quote a URL or a header. Each venue client decides what a received
answer means (its error codes) and signs its own requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
import structlog

from connectors.errors import (
    OutcomeUnknown,
    RateLimited,
    VenueBanned,
    VenueConnectionError,
    VenueError,
    VenueUnreachable,
)
from connectors.rest_metrics import (
    CLOCK_OFFSET,
    CLOCK_SYNCS,
    RATE_LIMIT_RESPONSES,
    RATE_LIMIT_WAIT_SECONDS,
    RATE_LIMIT_WAITS,
    VENUE_BANNED,
)

log = structlog.get_logger(__name__)

Method = Literal["GET", "POST", "DELETE"]
# A wait this short is taken as none: float drift (a clock at 1.8e9 s cannot add 1e-7 s) must not
# turn a finished wait into an endless loop, and 1 ms early is nothing against a 0.9 headroom.
_NEGLIGIBLE_WAIT_S = 1e-3


@dataclass(frozen=True, slots=True)
class RestResponse:
    """One answer: HTTP status, headers (lower-case names) and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class RestSession:
    """One aiohttp session to one venue's REST API; opened lazily, closed idempotently."""

    def __init__(self, venue: str, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.venue = venue
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"RestSession(venue={self.venue!r}, base_url={self.base_url!r})"

    async def close(self) -> None:
        """Close the session; idempotent."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s), trust_env=True
            )
        return self._session

    async def request(
        self,
        method: Method,
        path: str,
        *,
        query: str = "",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        action: str,
        may_execute: bool = False,
        timeout_s: float | None = None,
    ) -> RestResponse:
        """Send one request (`path` + `?query` exactly as signed) and return the venue's answer, any status.

        Raise VenueUnreachable when no connection opened, OutcomeUnknown when an
        order (`may_execute`) may have left without an answer, VenueConnectionError
        for the same on a request that changes nothing.
        """
        url = self.base_url + path + (f"?{query}" if query else "")
        total = self.timeout_s if timeout_s is None else timeout_s
        try:
            async with self._client().request(
                method,
                url,
                data=body,
                headers=dict(headers or {}),
                timeout=aiohttp.ClientTimeout(total=total),
            ) as response:
                payload = await response.read()
                lowered = {str(k).lower(): str(v) for k, v in response.headers.items()}
                return RestResponse(response.status, lowered, payload)
        except aiohttp.ClientConnectorError:
            raise VenueUnreachable(f"{self.venue} {action}: cannot connect; nothing was sent") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(self.venue, action, exc, may_execute=may_execute) from None


def transport_error(venue: str, action: str, exc: BaseException, *, may_execute: bool) -> VenueError:
    """Map a failure after the connection opened: an order's fate is unknown, anything else just failed."""
    kind = type(exc).__name__
    timed_out = isinstance(exc, asyncio.TimeoutError | TimeoutError)
    what = "no answer in time" if timed_out else "connection failed"
    if may_execute:
        return OutcomeUnknown(f"{venue} {action}: {what} ({kind}); execution status unknown")
    return VenueConnectionError(f"{venue} {action}: {what} ({kind})")


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Return a Retry-After header in seconds, if present and numeric (either spelling of the name)."""
    if headers is None:
        return None
    value = headers.get("retry-after", headers.get("Retry-After"))
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None


class VenueClock:
    """The venue's clock as seen from here: local time plus the last measured offset.

    The offset is measured around a server-time request, taking the midpoint of
    the round trip, and re-measured on schedule or after the venue refused a
    timestamp. Signing uses `now_ms()`.
    """

    def __init__(self, venue: str, *, wall_ms: Callable[[], float] | None = None) -> None:
        self.venue = venue
        self._wall_ms = wall_ms or (lambda: time.time() * 1000)
        self.offset_ms = 0.0
        self.synced_at_ms: float | None = None

    def now_ms(self) -> int:
        """Return the venue's current time in milliseconds, as best known."""
        return int(self._wall_ms() + self.offset_ms)

    async def sync(self, server_time_ms: Callable[[], Awaitable[float]], *, reason: str) -> float:
        """Measure the offset from one server-time request; return it in milliseconds."""
        sent = self._wall_ms()
        server = await server_time_ms()
        received = self._wall_ms()
        self.offset_ms = server - (sent + received) / 2
        self.synced_at_ms = received
        CLOCK_OFFSET.labels(self.venue).set(self.offset_ms / 1000)
        CLOCK_SYNCS.labels(self.venue, reason).inc()
        log.info("venue_clock_synced", venue=self.venue, offset_ms=round(self.offset_ms, 1), reason=reason)
        return self.offset_ms


@dataclass(slots=True)
class _Bucket:
    capacity: float
    refill_per_s: float
    level: float
    updated: float


@dataclass
class Throttle:
    """Hold requests back before the venue's limit, and obey what the venue says about it.

    Three inputs, whichever the venue offers:
    - documented budgets (`budget(name, capacity, per_s)`): a leaky bucket per budget
      (OKX's "N requests per 2 s", Kraken's decaying counter); a request costs units
      of one budget and waits until they fit under `headroom` × capacity;
    - what the venue reports (`report(remaining, reset_at_s)`, Bybit's and Coinbase's
      headers): with nothing left, wait until the reset;
    - refusals: `back_off(seconds)` after a 429 or a throttling code (nothing is sent
      before it elapses), `ban(seconds)` after a ban (every request is refused with
      VenueBanned until it ends, never sent).
    A request whose wait would exceed its `max_wait_s` is refused with RateLimited, unsent.
    """

    venue: str
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    headroom: float = 0.9
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _backoff_until: float = 0.0
    _banned_until: float = 0.0
    _reported_until: float = 0.0

    def budget(self, name: str, capacity: float, per_s: float) -> None:
        """Declare a budget of `capacity` units that drains at `per_s` units a second."""
        self._buckets[name] = _Bucket(capacity, per_s, 0.0, self.clock())

    @property
    def banned_until(self) -> float | None:
        """Return when the current ban ends (throttle clock), or None when not banned."""
        return self._banned_until if self.clock() < self._banned_until else None

    async def acquire(self, name: str | None = None, cost: float = 1.0, *, max_wait_s: float) -> None:
        """Wait until a request costing `cost` units of budget `name` may be sent, then count it."""
        while True:
            now = self.clock()
            self._check_ban(now)
            wait, reason = self._wait(name, cost, now)
            if wait <= 0:
                if name is not None:
                    self._buckets[name].level += cost
                return
            if wait > max_wait_s:
                raise RateLimited(
                    f"{self.venue} rate limit ({reason}): next request allowed in {wait:.3f} s, "
                    f"more than the {max_wait_s:g} s this request may wait; not sent",
                    wait,
                )
            RATE_LIMIT_WAITS.labels(self.venue, reason).inc()
            RATE_LIMIT_WAIT_SECONDS.labels(self.venue).inc(wait)
            log.info("rate_limit_wait", venue=self.venue, reason=reason, wait_s=round(wait, 3))
            await self.sleep(wait)

    def report(self, remaining: int | None, reset_at_s: float | None) -> None:
        """Take the venue's own count: with nothing remaining, nothing is sent before `reset_at_s`."""
        if remaining is not None and remaining <= 0 and reset_at_s is not None:
            self._reported_until = max(self._reported_until, reset_at_s)

    def back_off(self, seconds: float, *, reason: str) -> None:
        """Send nothing for `seconds` (a 429, a throttling code, a Retry-After)."""
        self._backoff_until = max(self._backoff_until, self.clock() + seconds)
        RATE_LIMIT_RESPONSES.labels(self.venue, "429" if reason == "429" else "throttled").inc()
        log.warning("rate_limited", venue=self.venue, retry_after_s=round(seconds, 3), reason=reason)

    def ban(self, seconds: float, *, reason: str) -> None:
        """Refuse every request for `seconds`: the venue banned this client."""
        self._banned_until = max(self._banned_until, self.clock() + seconds)
        RATE_LIMIT_RESPONSES.labels(self.venue, "banned").inc()
        VENUE_BANNED.labels(self.venue).set(1)
        log.error("venue_banned", venue=self.venue, ban_s=round(seconds, 3), reason=reason)

    def _check_ban(self, now: float) -> None:
        if not self._banned_until:
            return
        if now < self._banned_until:
            raise VenueBanned(
                f"{self.venue} bans this client for another {self._banned_until - now:.0f} s; not sent",
                self._banned_until,
            )
        self._banned_until = 0.0
        VENUE_BANNED.labels(self.venue).set(0)
        log.warning("venue_ban_ended", venue=self.venue)

    def _wait(self, name: str | None, cost: float, now: float) -> tuple[float, str]:
        if now < self._backoff_until:
            return self._backoff_until - now, "retry_after"
        if now < self._reported_until:
            return self._reported_until - now, "retry_after"
        if name is None:
            return 0.0, "budget"
        bucket = self._buckets[name]
        bucket.level = max(0.0, bucket.level - (now - bucket.updated) * bucket.refill_per_s)
        bucket.updated = now
        allowed = bucket.capacity * self.headroom
        # An empty bucket always admits one request, however costly: it could never fit otherwise.
        wait = (bucket.level + cost - allowed) / bucket.refill_per_s
        if bucket.level == 0 or wait <= _NEGLIGIBLE_WAIT_S:
            return 0.0, "budget"
        return wait, "budget"
