"""OkxRest: one signed, throttled, clock-corrected request to OKX v5 REST, its answer mapped.

Every request passes the `Throttle` first. OKX sends no rate-limit headers, so the
throttle holds the documented budgets (#overview-rate-limits and each endpoint's page,
"N requests per 2 seconds"), each declared as a bucket of N/2 that drains N/4 a second:
no 2-second window, sliding or fixed, then holds more than 0.95 N requests. Throttling
codes back off `backoff_s`; account blocks stop every request for `ban_s`; "busy" and
"unavailable" (50013, 50001) hold requests back for one back-off (`trading_errors`).

Private requests are signed on the venue's clock (measured at start, every
`clock_sync_interval_s`, and after a timestamp refusal). An order also carries
`expTime` = that clock + `order_deadline_ms`: "the request will not be processed if
the current system time of the server is after the expTime"
(#overview-transaction-timeouts). The one request ever sent twice is one OKX refused
for its timestamp (50102, 50112, 50036): refused before processing, it is re-signed
after re-measuring the clock and sent once more. Nothing else is re-sent, least of all
an order whose outcome is unknown.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, Literal
from urllib.parse import urlencode

import orjson
import structlog

from connectors.errors import ClockRejected, RateLimited, VenueBanned, VenueError
from connectors.okx.signing import OkxCredentials, auth_headers
from connectors.okx.trading_errors import VENUE, error_for, read_answer
from connectors.okx.trading_payloads import parse_server_time
from connectors.rest import RestSession, Throttle, VenueClock

log = structlog.get_logger(__name__)

Method = Literal["GET", "POST"]
# Documented limits, requests per 2 s: per instrument (User ID + Instrument ID) or per user/IP.
PER_INSTRUMENT: Final = {"order": 60, "cancel": 60, "query": 60}
BUDGETS: Final = {
    "time": 10, "instruments": 20, "balance": 10, "fee": 5, "pending": 60, "fills": 60, "fills_history": 10,
}  # fmt: skip


class OkxRest:
    """The request path to one OKX REST base URL: throttle, clock, signature, answer mapping."""

    def __init__(
        self,
        base_url: str,
        *,
        credentials: OkxCredentials | None,
        simulated: bool,
        request_timeout_s: float,
        order_deadline_ms: int,
        max_wait_s: float,
        order_max_wait_s: float,
        clock_sync_interval_s: float,
        backoff_s: float,
        ban_s: float,
        throttle: Throttle | None,
        clock: VenueClock | None,
    ) -> None:
        self.session = RestSession(VENUE, base_url, timeout_s=request_timeout_s)
        self.simulated = simulated
        self.order_deadline_ms = order_deadline_ms
        self.max_wait_s, self.order_max_wait_s = max_wait_s, order_max_wait_s
        self.clock_sync_interval_s, self.backoff_s, self.ban_s = clock_sync_interval_s, backoff_s, ban_s
        self.throttle = throttle or Throttle(VENUE)
        self.clock = clock or VenueClock(VENUE)
        self.signed = credentials is not None
        self._credentials = credentials
        self._clock_lock = asyncio.Lock()
        self._declared: set[str] = set()
        for name, per_2s in BUDGETS.items():
            self._declare(name, per_2s)

    def __repr__(self) -> str:
        return (
            f"OkxRest(base_url={self.session.base_url!r}, simulated={self.simulated}, signed={self.signed})"
        )

    async def close(self) -> None:
        """Close the session; idempotent."""
        await self.session.close()

    async def sync_clock(self, *, reason: str) -> float:
        """Measure the venue clock's offset from the system-time endpoint; return it in ms."""
        return await self.clock.sync(self._server_time_ms, reason=reason)

    def per_instrument(self, kind: str, inst_id: str) -> str:
        """Return the budget of `kind` (order, cancel, query) on one instrument, declared on first use."""
        name = f"{kind}:{inst_id}"
        if name not in self._declared:
            self._declare(name, PER_INSTRUMENT[kind])
        return name

    async def private(
        self,
        method: Method,
        path: str,
        params: dict[str, str],
        budget: str,
        action: str,
        *,
        order: bool = False,
        per_order: bool = False,
    ) -> list[Any]:
        """Send a signed request (`order`: a placement, with expTime, whose loss is OutcomeUnknown)."""
        if self._credentials is None:
            raise VenueError(f"okx {action}: no API credentials configured")
        await self._ensure_clock()
        return await self.request(
            method, path, params, budget, action, signed=True, order=order, per_order=per_order or order
        )

    async def request(
        self,
        method: Method,
        path: str,
        params: dict[str, str],
        budget: str,
        action: str,
        *,
        signed: bool = False,
        order: bool = False,
        per_order: bool = False,
    ) -> list[Any]:
        """Send one request through the throttle and return its `data`; re-sign once after a clock refusal."""
        query = urlencode(params) if method == "GET" else ""
        body = "" if method == "GET" else orjson.dumps(params).decode()
        for attempt in (1, 2):
            await self.throttle.acquire(
                budget, max_wait_s=self.order_max_wait_s if order else self.max_wait_s
            )
            headers = self._headers(method, path, query, body, order=order) if signed else {}
            response = await self.session.request(
                method, path, query=query, body=body.encode() if body else None, headers=headers,
                action=action, may_execute=order,
            )  # fmt: skip
            refusal, data = read_answer(response, per_order=per_order)
            if refusal is None:
                return data
            error = error_for(
                refusal, action, may_execute=order, now_s=self.throttle.clock(), backoff_s=self.backoff_s,
                ban_s=self.ban_s,
            )  # fmt: skip
            log.warning("okx_request_refused", action=action, status=refusal.status, code=refusal.code)
            self._obey(error, busy=refusal.busy)
            if isinstance(error, ClockRejected) and attempt == 1:
                # Refused before processing: re-measure the clock and sign this request once more.
                await self.sync_clock(reason="rejected")
                continue
            raise error
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _server_time_ms(self) -> float:
        return parse_server_time(await self.request("GET", "/api/v5/public/time", {}, "time", "server time"))

    async def _ensure_clock(self) -> None:
        if not self._clock_due():
            return
        async with self._clock_lock:
            if self._clock_due():
                await self.sync_clock(reason="scheduled")

    def _clock_due(self) -> bool:
        synced = self.clock.synced_at_ms
        local_ms = self.clock.now_ms() - self.clock.offset_ms
        return synced is None or local_ms - synced >= self.clock_sync_interval_s * 1000

    def _headers(self, method: Method, path: str, query: str, body: str, *, order: bool) -> dict[str, str]:
        assert self._credentials is not None
        now_ms = self.clock.now_ms()
        headers = auth_headers(
            self._credentials, epoch_ms=now_ms, method=method,
            request_path=path + (f"?{query}" if query else ""), body=body, simulated=self.simulated,
        )  # fmt: skip
        if order:
            headers["expTime"] = str(now_ms + self.order_deadline_ms)
        return headers

    def _obey(self, error: VenueError, *, busy: bool) -> None:
        if isinstance(error, VenueBanned):
            self.throttle.ban(self.ban_s, reason="account_blocked")
        elif isinstance(error, RateLimited):
            self.throttle.back_off(error.retry_after_s, reason="throttled")
        elif busy:
            self.throttle.back_off(self.backoff_s, reason="busy")

    def _declare(self, name: str, per_2s: int) -> None:
        self.throttle.budget(name, capacity=per_2s / 2, per_s=per_2s / 4)
        self._declared.add(name)
