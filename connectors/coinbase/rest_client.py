"""The signed request path to Coinbase Advanced Trade: throttle, JWT, venue clock, error mapping.

Every request first passes the throttle: the documented budget (30 requests/s per
user on private endpoints, 10/s per IP on public ones — secondary sources, so
the venue's own headers rule), the venue's `x-ratelimit-remaining` /
`x-ratelimit-reset` from the previous answer, and any 429 back-off. Signed
requests then get a fresh JWT whose `nbf` is the venue's time as measured from
`GET /api/v3/brokerage/time` (at start, then every `clock_sync_interval_s`).

Only one request is ever sent twice: one refused with 401 when re-measuring the
clock shows it had moved by more than `CLOCK_JUMP_MS`. A 401 is the gateway
refusing the token before anything ran, so nothing can have executed; and a
repeated `client_order_id` would return the existing order rather than create
a second (Create Order reference). Nothing else is re-sent: an order whose
outcome is unknown is for the caller to settle by query.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import structlog

from connectors.coinbase.payloads import parse_server_time_ms
from connectors.coinbase.signing import CoinbaseCredentials, build_jwt, jwt_uri
from connectors.coinbase.trading_errors import (
    VENUE,
    decode_body,
    http_error,
    rate_limit_state,
    rate_limited,
    retry_after,
    unauthorized,
)
from connectors.errors import OutcomeUnknown, ParseError, VenueError
from connectors.rest import Method, RestResponse, RestSession, Throttle, VenueClock

log = structlog.get_logger(__name__)

API_PREFIX: Final = "/api/v3/brokerage"
PRIVATE_PER_S: Final = 30.0
PUBLIC_PER_S: Final = 10.0
CLOCK_JUMP_MS: Final = 1000.0


class CoinbaseRest:
    """One Coinbase REST endpoint with the venue's signing, clock and limits; answers are JSON values."""

    def __init__(
        self,
        base_url: str,
        credentials: CoinbaseCredentials | None,
        *,
        request_timeout_s: float = 10.0,
        max_wait_s: float = 30.0,
        clock_sync_interval_s: float = 300.0,
        throttle: Throttle | None = None,
        wall_ms: Callable[[], float] | None = None,
    ) -> None:
        self.session = RestSession(VENUE, base_url, timeout_s=request_timeout_s)
        self.host = urlsplit(self.session.base_url).netloc
        self.clock = VenueClock(VENUE, wall_ms=wall_ms)
        self.throttle = throttle or Throttle(VENUE)
        self.throttle.budget("private", PRIVATE_PER_S, PRIVATE_PER_S)
        self.throttle.budget("public", PUBLIC_PER_S, PUBLIC_PER_S)
        self.max_wait_s = max_wait_s
        self.clock_sync_interval_s = clock_sync_interval_s
        self._credentials = credentials
        self._secrets = credentials.values() if credentials else ()
        self._clock_lock = asyncio.Lock()
        self._synced_at = -float("inf")

    def __repr__(self) -> str:
        return f"CoinbaseRest(base_url={self.session.base_url!r}, signed={self._credentials is not None})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Return every credential string, for scrubbing."""
        return self._secrets

    async def close(self) -> None:
        """Close the HTTP session; idempotent."""
        await self.session.close()

    async def sync_clock(self, *, reason: str) -> float:
        """Measure the venue clock's offset from `GET /time`; return it in milliseconds."""

        async def server_time() -> float:
            return parse_server_time_ms(await self.call("GET", "/time", action="server time", signed=False))

        offset = await self.clock.sync(server_time, reason=reason)
        self._synced_at = time.monotonic()
        return offset

    async def _ensure_clock(self) -> None:
        if time.monotonic() - self._synced_at < self.clock_sync_interval_s:
            return
        async with self._clock_lock:
            if time.monotonic() - self._synced_at >= self.clock_sync_interval_s:
                await self.sync_clock(reason="scheduled")

    async def call(
        self,
        method: Method,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        action: str,
        may_execute: bool = False,
        signed: bool = True,
        max_wait_s: float | None = None,
    ) -> Any:
        """Send one request to `API_PREFIX + path` and return its JSON answer; map every failure."""
        if signed:
            if self._credentials is None:
                raise VenueError(f"{VENUE} {action}: no API credentials configured")
            await self._ensure_clock()
        for attempt in (1, 2):
            response = await self._send(method, path, query, body, action, may_execute, signed, max_wait_s)
            if response.status == 401 and signed:
                offset = self.clock.offset_ms
                moved = abs(await self.sync_clock(reason="rejected") - offset) > CLOCK_JUMP_MS
                if moved and attempt == 1:
                    log.warning("coinbase_jwt_refused_resync", action=action)
                    continue  # refused before anything ran: send it once more with the venue's time
                raise unauthorized(response.body, clock_moved=moved, secrets=self._secrets)
            return self._answer(response, action, may_execute=may_execute)
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _send(
        self,
        method: Method,
        path: str,
        query: Sequence[tuple[str, str]],
        body: bytes | None,
        action: str,
        may_execute: bool,
        signed: bool,
        max_wait_s: float | None,
    ) -> RestResponse:
        wait = self.max_wait_s if max_wait_s is None else max_wait_s
        await self.throttle.acquire("private" if signed else "public", max_wait_s=wait)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if signed:
            assert self._credentials is not None
            uri = jwt_uri(method, self.host, API_PREFIX + path)
            headers["Authorization"] = (
                f"Bearer {build_jwt(self._credentials, uri, self.clock.now_ms() // 1000)}"
            )
        response = await self.session.request(
            method,
            API_PREFIX + path,
            query=urlencode(list(query)),
            body=body,
            headers=headers,
            action=action,
            may_execute=may_execute,
        )
        self._observe(response.headers)
        return response

    def _observe(self, headers: Mapping[str, str]) -> None:
        remaining, reset_in_s = rate_limit_state(headers, self.clock.now_ms() / 1000)
        if reset_in_s is not None:
            self.throttle.report(remaining, self.throttle.clock() + reset_in_s)

    def _answer(self, response: RestResponse, action: str, *, may_execute: bool) -> Any:
        if response.status == 429:
            self.throttle.back_off(retry_after(response.headers), reason="429")
            raise rate_limited(response.headers)
        if not 200 <= response.status < 300:
            error = http_error(
                response.status, response.body, action=action, may_execute=may_execute, secrets=self._secrets
            )
            log.info("coinbase_request_failed", action=action, status=response.status, error=str(error))
            raise error
        payload = decode_body(response.body)
        if payload is None:
            if may_execute:
                raise OutcomeUnknown(
                    f"{VENUE} {action}: unreadable HTTP {response.status} answer; status unknown"
                )
            raise ParseError(f"{VENUE} {action}: the answer is not JSON")
        return payload


def query_pairs(**params: str | Sequence[str] | None) -> list[tuple[str, str]]:
    """Return query pairs; a sequence repeats its key (`product_ids=A&product_ids=B`), None is left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        pairs.extend((key, item) for item in ([value] if isinstance(value, str) else value))
    return pairs
