"""BybitRest: one signed, throttled request to Bybit v5, its answer read and classified.

Every request passes two throttles (`connectors.rest.Throttle`) before it is sent:
- its endpoint's, per UID: the documented per-second limit as a budget
  (`ENDPOINT_LIMITS`), then what the venue reports in every answer —
  `X-Bapi-Limit` (the limit, which replaces the budget when it differs),
  `X-Bapi-Limit-Status` (requests remaining) and `X-Bapi-Limit-Reset-Timestamp`:
  with nothing remaining, nothing goes to that endpoint before the reset;
  retCode 10006 backs off until that reset;
- the IP's: 600 requests per 5 s; HTTP 429 backs off; HTTP 403 (or retCode
  10009) bans for 10 minutes, during which nothing at all is sent.

Signed requests carry `X-BAPI-RECV-WINDOW` and a timestamp from the venue clock
(`VenueClock`, measured at start and every `clock_sync_interval_s`). A read
refused with 10002 is sent once more after re-measuring the clock; an order
never is: `BybitClockRejected` (with the timestamp signed) goes to the caller,
which settles it by query (see `connectors.bybit.trading`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

import structlog

from connectors.bybit.facts import FACTS, TESTNET
from connectors.bybit.payloads import envelope, server_time_ms
from connectors.bybit.signing import BybitCredentials, json_body, query_string, signed_headers
from connectors.bybit.trading_errors import (
    BAN_S,
    DEFAULT_BACKOFF_S,
    IP_LIMIT_CODE,
    VENUE,
    BybitClockRejected,
    api_error,
    http_error,
    scrub,
)
from connectors.errors import OutcomeUnknown, ParseError, RateLimited, VenueBanned, VenueError
from connectors.rest import RestResponse, RestSession, Throttle, VenueClock, retry_after_s

log = structlog.get_logger(__name__)

Method = Literal["GET", "POST"]

# docs/v5/guide.mdx (production, testnet) and docs/v5/demo.mdx (demo trading).
PRODUCTION_REST_URL: Final = FACTS.rest_url
TESTNET_REST_URL: Final = TESTNET.trade_url
DEMO_REST_URL: Final = "https://api-demo.bybit.com"

# docs/v5/rate-limit/rate-limit.mdx, spot column (per UID, per second).
ENDPOINT_LIMITS: Final = {
    "/v5/order/create": 20,
    "/v5/order/cancel": 20,
    "/v5/order/realtime": 50,
    "/v5/order/history": 50,
    "/v5/execution/list": 50,
    "/v5/account/wallet-balance": 50,
    "/v5/account/fee-rate": 5,
}
IP_LIMIT: Final = (600, 5.0)  # requests per seconds, per IP
TIME_PATH: Final = "/v5/market/time"
_MAX_RESET_WAIT_MS: Final = 60_000  # a reset further away than this is not believed
_RESET_IS_NOW_S: Final = 0.05  # a reset this close to now, by our estimate of the venue's clock, is now


def rest_url_for(*, testnet: bool, demo: bool) -> str:
    """Return the REST host: production, testnet or demo trading."""
    if testnet and demo:
        raise ValueError("bybit: choose testnet or demo trading, not both")
    return TESTNET_REST_URL if testnet else DEMO_REST_URL if demo else PRODUCTION_REST_URL


class BybitRest:
    """Signed, throttled requests to one Bybit REST host; answers classified by `trading_errors`."""

    def __init__(
        self,
        base_url: str,
        credentials: BybitCredentials,
        *,
        recv_window_ms: int,
        timeout_s: float,
        clock_sync_interval_s: float,
        wall_ms: Callable[[], float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.session = RestSession(VENUE, base_url, timeout_s=timeout_s)
        self.clock = VenueClock(VENUE, wall_ms=wall_ms)
        self.recv_window_ms = recv_window_ms
        self.clock_sync_interval_s = clock_sync_interval_s
        self._credentials = credentials
        self._secrets = credentials.values()
        self._monotonic = monotonic
        self.ip = Throttle(VENUE, clock=monotonic, sleep=sleep)
        self.ip.budget("ip", IP_LIMIT[0], IP_LIMIT[0] / IP_LIMIT[1])
        self.endpoints: dict[str, Throttle] = {}
        self._limits: dict[str, int] = {}
        for path, limit in ENDPOINT_LIMITS.items():
            self.endpoints[path] = Throttle(VENUE, clock=monotonic, sleep=sleep)
            self._declare(path, limit)
        self._synced_at = -float("inf")
        self._clock_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"BybitRest(base_url={self.session.base_url!r})"

    async def close(self) -> None:
        """Close the HTTP session; idempotent."""
        await self.session.close()

    # ----- clock -----------------------------------------------------------------------------

    async def sync_clock(self, *, reason: str) -> float:
        """Measure the venue clock's offset (`GET /v5/market/time`); return it in ms."""
        offset = await self.clock.sync(self._server_time, reason=reason)
        self._synced_at = self._monotonic()
        return offset

    async def _server_time(self) -> float:
        return server_time_ms(await self.public(TIME_PATH, {}, action="server time"))

    async def _ensure_clock(self) -> None:
        if self._monotonic() - self._synced_at < self.clock_sync_interval_s:
            return
        async with self._clock_lock:
            if self._monotonic() - self._synced_at >= self.clock_sync_interval_s:
                await self.sync_clock(reason="scheduled")

    # ----- requests --------------------------------------------------------------------------

    async def public(
        self, path: str, params: dict[str, str], *, action: str, max_wait_s: float = 30.0
    ) -> Any:
        """Send an unsigned GET (market data) and return its `result`."""
        return await self._exchange("GET", path, params, action=action, signed=False, max_wait_s=max_wait_s)

    async def signed(
        self,
        method: Method,
        path: str,
        params: dict[str, str],
        *,
        action: str,
        max_wait_s: float,
        may_execute: bool = False,
        cancelling: bool = False,
    ) -> Any:
        """Send a signed request and return its `result`; a read refused for its timestamp is re-sent once."""
        await self._ensure_clock()
        try:
            return await self._exchange(
                method,
                path,
                params,
                action=action,
                signed=True,
                max_wait_s=max_wait_s,
                may_execute=may_execute,
                cancelling=cancelling,
            )
        except BybitClockRejected:
            if may_execute:
                raise  # an order is settled by query, never re-sent here
            log.warning("clock_rejected_resync", venue=VENUE, action=action)
            await self.sync_clock(reason="rejected")
        return await self._exchange(
            method, path, params, action=action, signed=True, max_wait_s=max_wait_s, cancelling=cancelling
        )

    async def _exchange(
        self,
        method: Method,
        path: str,
        params: dict[str, str],
        *,
        action: str,
        signed: bool,
        max_wait_s: float,
        may_execute: bool = False,
        cancelling: bool = False,
    ) -> Any:
        await self._admit(path, max_wait_s)
        signed_ms = self.clock.now_ms()
        payload = query_string(params) if method == "GET" else json_body(params)
        headers = signed_headers(self._credentials, signed_ms, self.recv_window_ms, payload) if signed else {}
        if method == "POST":
            headers["Content-Type"] = "application/json"
        response = await self.session.request(
            method,
            path,
            query=payload if method == "GET" else "",
            body=payload.encode() if method == "POST" else None,
            headers=headers,
            action=action,
            may_execute=may_execute,
        )
        self._observe(path, response)
        return self._result(path, response, action, may_execute, cancelling, signed_ms)

    async def _admit(self, path: str, max_wait_s: float) -> None:
        """Wait for the endpoint's and the IP's budgets; refuse at once while banned."""
        banned = self.ip.banned_until
        if banned is not None:
            raise VenueBanned(
                f"bybit bans this IP for another {banned - self._monotonic():.0f} s; not sent", banned
            )
        endpoint = self.endpoints.get(path)
        if endpoint is not None:
            await endpoint.acquire("uid", max_wait_s=max_wait_s)
        await self.ip.acquire("ip", max_wait_s=max_wait_s)  # last: a ban that began meanwhile holds here

    # ----- answers ---------------------------------------------------------------------------

    def _observe(self, path: str, response: RestResponse) -> None:
        """Take the venue's own count for this endpoint from the answer's headers."""
        throttle = self.endpoints.get(path)
        if throttle is None:
            return
        limit = _int(response.headers.get("x-bapi-limit"))
        if limit is not None and limit > 0 and limit != self._limits[path]:
            log.info("rate_limit_updated", venue=VENUE, path=path, limit=limit)
            self._declare(path, limit)
        remaining = _int(response.headers.get("x-bapi-limit-status"))
        reset_in_s = self._reset_in_s(response)
        if remaining is not None and remaining <= 0 and reset_in_s is not None:
            # Until the limit is exceeded the reset timestamp is "just the current timestamp"
            # (rate-limit.mdx); with nothing left in a rolling one-second window, wait that second.
            # Our estimate of the venue's clock is a few ms off at best, so a reset that close to
            # now is "now" too (waiting 1 ms of it sent a 21st order within the second).
            wait_s = reset_in_s if reset_in_s > _RESET_IS_NOW_S else DEFAULT_BACKOFF_S
            throttle.report(remaining, self._monotonic() + wait_s)

    def _reset_in_s(self, response: RestResponse) -> float | None:
        reset_ms = _int(response.headers.get("x-bapi-limit-reset-timestamp"))
        if reset_ms is None:
            return None
        return min(max(0, reset_ms - self.clock.now_ms()), _MAX_RESET_WAIT_MS) / 1000

    def _result(
        self,
        path: str,
        response: RestResponse,
        action: str,
        may_execute: bool,
        cancelling: bool,
        signed_ms: int,
    ) -> Any:
        status = response.status
        if status in (403, 429) or status >= 500:
            self._refused_by_status(status, response)
            refusal = http_error(
                status, action, may_execute=may_execute, retry_after_s=retry_after_s(response.headers)
            )
            if isinstance(refusal, VenueBanned):
                refusal.until_s = self.ip.banned_until or refusal.until_s
            raise refusal
        try:
            code, message, result = envelope(response.body)
        except ParseError:
            if status >= 300:
                raise http_error(status, action, may_execute=may_execute, retry_after_s=None) from None
            if may_execute:
                raise OutcomeUnknown(
                    f"bybit {action}: unreadable answer (HTTP {status}); execution status unknown"
                ) from None
            raise
        if code == 0:
            return result
        reset_in_s = self._reset_in_s(response)
        error = api_error(
            code,
            scrub(message, self._secrets),
            status,
            action,
            may_execute=may_execute,
            cancelling=cancelling,
            reset_in_s=reset_in_s or None,
            signed_ms=signed_ms,
        )
        self._obey(path, code, error)
        log.info("bybit_request_failed", venue=VENUE, action=action, code=code, status=status)
        raise error

    def _refused_by_status(self, status: int, response: RestResponse) -> None:
        if status == 403:
            self.ip.ban(BAN_S, reason="403")
        elif status == 429:
            self.ip.back_off(retry_after_s(response.headers) or DEFAULT_BACKOFF_S, reason="429")

    def _obey(self, path: str, code: int, error: VenueError) -> None:
        """Make the throttles hold what the venue's refusal asks for."""
        if isinstance(error, VenueBanned):
            self.ip.ban(BAN_S, reason=str(code))
            error.until_s = self.ip.banned_until or error.until_s
        elif isinstance(error, RateLimited):
            per_ip = code == IP_LIMIT_CODE or path not in self.endpoints
            (self.ip if per_ip else self.endpoints[path]).back_off(error.retry_after_s, reason=str(code))

    def _declare(self, path: str, limit: int) -> None:
        self._limits[path] = limit
        self.endpoints[path].budget("uid", limit, limit)


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None
