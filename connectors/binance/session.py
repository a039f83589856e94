"""BinanceSession: python-binance's `AsyncClient` under the rate limiter, the server clock and the rules.

What every Binance REST call needs, whatever it asks: the session's lifecycle,
the header-driven `RateLimiter` every request passes first (with a bounded
timeout), the measured offset to the server clock that signed requests use (at
start, then every `clock_sync_interval_s`) with `recv_window_ms` (≤ 5000 by
default; python-binance's own default is 10000), and the exchange rules
(symbol filters). A -1021 (timestamp outside recvWindow) is a refusal, so that
one request is re-sent once after re-measuring the clock; nothing else is ever
re-sent here. Failures are mapped to `connectors.binance.errors`, and a foreign
error that quotes a secret is never chained.

`BinanceConnector` (`connectors.binance.rest`) adds the endpoints.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace, TracebackType
from typing import Any, Final, NoReturn, Self

import aiohttp
import structlog
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from connectors.binance.errors import (
    TRANSPORT_ERRORS,
    ClockRejected,
    OrderRuleViolation,
    chain_is_clean,
    from_api_error,
    from_transport_error,
)
from connectors.binance.facts import FACTS, TESTNET
from connectors.binance.filters import SymbolFilters, parse_exchange_info
from connectors.binance.ratelimit import RateLimiter, parse_rate_limits
from connectors.errors import ParseError, VenueError
from connectors.rest_metrics import CLOCK_OFFSET, CLOCK_SYNCS
from connectors.symbols import join_symbol, split_concatenated, to_concatenated

__all__ = ["PRODUCTION_REST_URL", "TESTNET_REST_URL", "VENUE", "ApiCredentials", "BinanceSession"]

log = structlog.get_logger(__name__)

PRODUCTION_REST_URL: Final = FACTS.rest_url
TESTNET_REST_URL: Final = TESTNET.trade_url
VENUE: Final = "binance"


@dataclass(frozen=True, slots=True, repr=False)
class ApiCredentials:
    """An API key with either its HMAC secret or an Ed25519 private key (PEM); never printed."""

    api_key: str
    api_secret: str | None = None
    private_key: str | None = None

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("binance credentials: the API key is empty")
        if (self.api_secret is None) == (self.private_key is None):
            raise ValueError("binance credentials: give exactly one of an HMAC secret and an Ed25519 key")

    def __repr__(self) -> str:
        kind = "hmac" if self.api_secret is not None else "ed25519"
        return f"ApiCredentials(<redacted>, signing={kind})"

    def values(self) -> tuple[str, ...]:
        """Return every secret string, for scrubbing text that might quote one."""
        return tuple(v for v in (self.api_key, self.api_secret, self.private_key) if v)


class BinanceSession:
    """One python-binance session, safely under the rate limits, clock skew and faults."""

    venue: Final = VENUE

    def __init__(
        self,
        *,
        rest_url: str = PRODUCTION_REST_URL,
        credentials: ApiCredentials | None = None,
        recv_window_ms: int = 5000,
        request_timeout_s: float = 10.0,
        max_wait_s: float = 30.0,
        order_max_wait_s: float = 2.0,
        clock_sync_interval_s: float = 300.0,
        exchange_info_ttl_s: float = 3600.0,
        limiter: RateLimiter | None = None,
    ) -> None:
        """Configure; nothing is opened until `start()` (or the first call, which starts it)."""
        if not 0 < recv_window_ms <= 60_000:
            raise ValueError(f"recv_window_ms must be 1..60000, got {recv_window_ms}")
        self.rest_url = rest_url.rstrip("/")
        self.recv_window_ms = recv_window_ms
        self.request_timeout_s = request_timeout_s
        self.max_wait_s = max_wait_s
        self.order_max_wait_s = order_max_wait_s
        self.clock_sync_interval_s = clock_sync_interval_s
        self.exchange_info_ttl_s = exchange_info_ttl_s
        self.limiter = limiter or RateLimiter(VENUE, clock=lambda: self.server_now_ms() / 1000)
        self._credentials = credentials
        self._secrets = credentials.values() if credentials else ()
        self._client: AsyncClient | None = None
        self._started = False  # the clock is measured and the rules are loaded
        self._offset_ms = 0.0
        self._clock_synced_at = -float("inf")
        self._filters: dict[str, SymbolFilters] = {}
        self._filters_loaded_at = -float("inf")
        self._start_lock = asyncio.Lock()
        self._clock_lock = asyncio.Lock()
        self._info_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rest_url={self.rest_url!r}, signed={self._credentials is not None})"

    # ----- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session, measure the clock offset and load the exchange rules; idempotent."""
        async with self._start_lock:
            if self._started:
                return
            self._client = self._new_client()
            try:
                await self.sync_clock(reason="start")
                await self._load_exchange_info()
            except BaseException:
                await self.close()
                raise
            self._started = True
        log.info("binance_rest_started", url=self.rest_url, recv_window_ms=self.recv_window_ms)

    async def close(self) -> None:
        """Close the HTTP session; closing again is a no-op."""
        client, self._client = self._client, None
        self._started = False
        if client is not None:
            await client.close_connection()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _new_client(self) -> AsyncClient:
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._on_response)
        creds = self._credentials
        client = AsyncClient(
            api_key=creds.api_key if creds else None,
            api_secret=creds.api_secret if creds else None,
            private_key=creds.private_key.strip() if creds and creds.private_key else None,
            requests_params={"timeout": aiohttp.ClientTimeout(total=self.request_timeout_s)},
            session_params={"trace_configs": [trace]},
        )
        client.API_URL = f"{self.rest_url}/api"
        client.REQUEST_RECVWINDOW = self.recv_window_ms
        client.timestamp_offset = round(self._offset_ms)
        return client

    async def _on_response(
        self, _session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        # Every answer, errors included, reports the IP's running totals and any 429/418.
        self.limiter.observe(params.response.status, params.response.headers)

    # ----- clock -----------------------------------------------------------------------------

    def server_now_ms(self) -> int:
        """Return the venue's current time as estimated from the last clock measurement."""
        return int(time.time() * 1000 + self._offset_ms)

    async def sync_clock(self, *, reason: str = "scheduled") -> float:
        """Measure the venue clock's offset from ours (RTT midpoint); return it in milliseconds."""
        client = self._require_client()
        before = time.time()
        answer = await self._call("server time", client.get_server_time, {}, weight=1)
        after = time.time()
        server_ms = answer.get("serverTime") if isinstance(answer, dict) else None
        if not isinstance(server_ms, int):
            raise ParseError(f"binance time: 'serverTime' must be an integer, got {server_ms!r}")
        self._offset_ms = server_ms - (before + after) * 500
        client.timestamp_offset = round(self._offset_ms)
        self._clock_synced_at = time.monotonic()
        CLOCK_OFFSET.labels(VENUE).set(self._offset_ms / 1000)
        CLOCK_SYNCS.labels(VENUE, reason).inc()
        log.info(
            "clock_synced",
            venue=VENUE,
            offset_ms=round(self._offset_ms, 1),
            rtt_ms=round((after - before) * 1000, 1),
            reason=reason,
        )
        return self._offset_ms

    async def _ensure_clock(self) -> None:
        if time.monotonic() - self._clock_synced_at < self.clock_sync_interval_s:
            return
        async with self._clock_lock:
            if time.monotonic() - self._clock_synced_at >= self.clock_sync_interval_s:
                await self.sync_clock(reason="scheduled")

    # ----- the request path ------------------------------------------------------------------

    async def _call(
        self,
        action: str,
        method: Callable[..., Awaitable[Any]],
        params: dict[str, Any],
        *,
        weight: int,
        orders: int = 0,
        signed: bool = False,
        max_wait_s: float | None = None,
    ) -> Any:
        """Send one request through the limiter; map every failure; re-send only after a -1021."""
        if signed:
            if self._credentials is None:
                raise VenueError(f"binance {action}: no API credentials configured")
            await self._ensure_clock()
        wait = self.max_wait_s if max_wait_s is None else max_wait_s
        for attempt in (1, 2):
            await self.limiter.acquire(weight, orders=orders, max_wait_s=wait)
            try:
                return await method(**params)
            except BinanceAPIException as exc:
                error, foreign = from_api_error(exc, self._secrets), exc
            except TRANSPORT_ERRORS as exc:
                error, foreign = from_transport_error(exc, action), exc
            if isinstance(error, ClockRejected) and attempt == 1:
                # -1021 is a refusal before execution: re-measure and send this request once more.
                log.warning("clock_rejected_resync", venue=VENUE, action=action)
                await self.sync_clock(reason="rejected")
                continue
            self._raise(action, error, foreign)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _raise(self, action: str, error: VenueError, foreign: BaseException) -> NoReturn:
        log.info("binance_request_failed", venue=VENUE, action=action, error=str(error))
        if chain_is_clean(foreign, self._secrets):
            raise error from foreign
        raise error from None  # the foreign text quotes the signed request: keep it out of every trace

    def _require_client(self) -> AsyncClient:
        if self._client is None:
            raise VenueError("binance connector is not started")
        return self._client

    async def _client_ready(self) -> AsyncClient:
        if not self._started:
            await self.start()
        return self._require_client()

    # ----- exchange rules --------------------------------------------------------------------

    async def _load_exchange_info(self) -> None:
        client = self._require_client()
        answer = await self._call("exchange info", client.get_exchange_info, {}, weight=20)
        self._filters = parse_exchange_info(answer)
        self.limiter.set_rules(parse_rate_limits(answer))
        self._filters_loaded_at = time.monotonic()
        log.info("exchange_info_loaded", venue=VENUE, symbols=len(self._filters))

    async def symbol_filters(self, symbol: str) -> SymbolFilters:
        """Return the trading rules of canonical `symbol`; raise OrderRuleViolation if Binance lacks it."""
        await self._client_ready()
        if time.monotonic() - self._filters_loaded_at >= self.exchange_info_ttl_s:
            async with self._info_lock:
                if time.monotonic() - self._filters_loaded_at >= self.exchange_info_ttl_s:
                    await self._load_exchange_info()
        rules = self._filters.get(to_concatenated(symbol))
        if rules is None:
            raise OrderRuleViolation(f"binance does not list {symbol}")
        return rules

    def _canonical(self, venue_symbol: str) -> str:
        rules = self._filters.get(venue_symbol)
        if rules is not None:
            return rules.symbol
        return join_symbol(*split_concatenated(venue_symbol))
