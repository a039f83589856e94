"""The one WebSocket connection runner every venue shares.

A `StreamRunner` keeps one venue connection alive for as long as it runs:
connect, subscribe, read frames into the adapter's parser and hand quotes to
`on_quote`; reopen on errors, closes, silence and the venue's forced cuts, with
capped, fully jittered exponential backoff between attempts that delivered
nothing. Per connection it owns two named tasks in a TaskGroup: a watchdog
(silence and maximum age) and, when the venue needs one, an app-level keepalive.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, WebSocketException

from connectors import metrics
from connectors.base import Parser, VenueAdapter, frame_sample
from connectors.errors import ParseError, ReconnectRequested, VenueConnectionError
from connectors.metrics import ReconnectReason
from connectors.types import Quote

ConnectionState = Literal["idle", "connecting", "streaming", "backoff", "stopped"]

_MAX_FRAME_BYTES: Final = 16 * 2**20
_OPEN_TIMEOUT_S: Final = 10.0
# Bounds how long a silent (possibly dead) peer can hold up a reconnect.
_CLOSE_TIMEOUT_S: Final = 2.0
_PARSE_ERROR_LOG_EVERY: Final = 1000
# Reconnecting at once is safe only when the venue itself asked, or we left on schedule.
_NO_BACKOFF: Final[frozenset[ReconnectReason]] = frozenset({"server_shutdown", "max_age"})

_log = structlog.get_logger(__name__)


def backoff_delay(attempt: int, *, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Return the full-jitter delay before retry `attempt` (0 for the first retry after a success)."""
    # Capping the exponent keeps 2**attempt a float-sized number after days of failures.
    return rng.uniform(0.0, min(max_s, initial_s * 2.0 ** min(attempt, 64)))


@dataclass(slots=True)
class _Connection:
    """What one open connection delivered and why it ended."""

    opened_at: float
    frames: int = 0
    quotes: int = 0
    end_reason: ReconnectReason | None = None
    end_detail: str = ""

    def end(self, reason: ReconnectReason, detail: str = "") -> None:
        """Record why the connection ended; the first cause found wins."""
        if self.end_reason is None:
            self.end_reason, self.end_detail = reason, detail


class StreamRunner:
    """Stream one venue's quotes into a callback, reconnecting for as long as it runs."""

    def __init__(
        self,
        adapter: VenueAdapter,
        on_quote: Callable[[Quote], None],
        *,
        silence_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 30.0,
        rng: random.Random | None = None,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        on_frame: Callable[[str | bytes, int], None] | None = None,
    ) -> None:
        """Prepare to stream `adapter`'s symbols; raise ValueError on non-positive durations.

        `on_frame(frame, received_ns)`, when given, sees every raw frame before it
        is parsed (what `smartroute record` writes to disk).
        """
        for name, value in (
            ("silence_timeout_s", silence_timeout_s),
            ("backoff_initial_s", backoff_initial_s),
            ("backoff_max_s", backoff_max_s),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        self._adapter = adapter
        self._on_quote = on_quote
        self._silence_timeout_s = silence_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._rng = rng if rng is not None else random.Random()
        self._wall_clock_ns = wall_clock_ns
        self._on_frame = on_frame
        self._state: ConnectionState = "idle"
        self._connects = 0
        self._last_frame_monotonic: float | None = None
        self._parse_errors = 0
        venue = adapter.venue
        metrics.init_venue_metrics(venue)
        self._messages_total = metrics.WS_MESSAGES.labels(venue)
        self._parse_errors_total = metrics.WS_PARSE_ERRORS.labels(venue)
        self._quotes_total = metrics.QUOTES.labels(venue)
        self._connected = metrics.WS_CONNECTED.labels(venue)
        self._last_message_ts = metrics.WS_LAST_MESSAGE_TIMESTAMP.labels(venue)

    @property
    def state(self) -> ConnectionState:
        """Return what the runner is doing now."""
        return self._state

    @property
    def connects(self) -> int:
        """Return how many connections have opened so far."""
        return self._connects

    @property
    def last_frame_monotonic(self) -> float | None:
        """Return the `time.monotonic()` of the last frame received, None before the first."""
        return self._last_frame_monotonic

    async def run(self) -> None:
        """Stream until cancelled, retrying transient faults without limit.

        Exceptions raised by `on_quote` are the caller's bugs: they end the run,
        wrapped in an ExceptionGroup by the connection's task group.
        """
        with structlog.contextvars.bound_contextvars(venue=self._adapter.venue):
            attempt = 0
            reason: ReconnectReason
            try:
                while True:
                    try:
                        connection = await self._session()
                    except VenueConnectionError as exc:
                        reason, detail, delivered = "error", str(exc), False
                    else:
                        # _read records an end reason on every way out of a session.
                        reason = connection.end_reason or "closed"
                        detail, delivered = connection.end_detail, connection.quotes > 0
                    metrics.WS_RECONNECTS.labels(self._adapter.venue, reason).inc()
                    if reason in _NO_BACKOFF:
                        attempt = 0
                        continue
                    if delivered:
                        attempt = 0  # the connection was healthy: start the backoff over
                    await self._back_off(attempt, reason, detail)
                    attempt += 1
            finally:
                self._state = "stopped"
                self._connected.set(0)

    async def _back_off(self, attempt: int, reason: ReconnectReason, detail: str) -> None:
        delay_s = backoff_delay(
            attempt, initial_s=self._backoff_initial_s, max_s=self._backoff_max_s, rng=self._rng
        )
        self._state = "backoff"
        _log.info("ws_backoff", delay_s=round(delay_s, 3), attempt=attempt, reason=reason, detail=detail)
        await asyncio.sleep(delay_s)

    async def _session(self) -> _Connection:
        """Open one connection, stream it until it ends and return what it delivered."""
        url = self._adapter.connect_url()
        self._state = "connecting"
        _log.info("ws_connecting", url=url)
        try:
            ws = await connect(
                url, open_timeout=_OPEN_TIMEOUT_S, close_timeout=_CLOSE_TIMEOUT_S, max_size=_MAX_FRAME_BYTES
            )
        except (OSError, WebSocketException) as exc:
            raise VenueConnectionError(f"cannot connect to {url}: {exc!r}") from exc
        connection = _Connection(opened_at=time.monotonic())
        self._connects += 1
        self._connected.set(1)
        _log.info("ws_connected", url=url, connects=self._connects)
        try:
            await self._stream(ws, connection)
        except (OSError, WebSocketException) as exc:
            connection.end("error", repr(exc))
        finally:
            self._connected.set(0)
            await ws.close()
        _log.info(
            "ws_closed",
            reason=connection.end_reason,
            detail=connection.end_detail,
            close_code=ws.close_code,
            frames=connection.frames,
            quotes=connection.quotes,
            duration_s=round(time.monotonic() - connection.opened_at, 3),
        )
        return connection

    async def _stream(self, ws: ClientConnection, connection: _Connection) -> None:
        await self._subscribe(ws)
        self._state = "streaming"
        venue = self._adapter.venue
        keepalive = self._adapter.keepalive_message()
        interval_s = self._adapter.keepalive_interval_s
        async with asyncio.TaskGroup() as group:
            helpers = [group.create_task(self._watch(ws, connection), name=f"{venue}-ws-watchdog")]
            if keepalive is not None and interval_s is not None:
                helpers.append(
                    group.create_task(
                        self._keepalive(ws, keepalive, interval_s), name=f"{venue}-ws-keepalive"
                    )
                )
            await self._read(ws, connection)
            # The connection is over: nothing is left to watch or keep alive.
            for helper in helpers:
                helper.cancel()

    async def _subscribe(self, ws: ClientConnection) -> None:
        messages = self._adapter.subscribe_messages()
        for number, message in enumerate(messages):
            if number:
                await asyncio.sleep(self._adapter.subscribe_interval_s)
            await ws.send(message)
        _log.info("ws_subscribed", messages=len(messages), symbols=len(self._adapter.symbols))

    async def _read(self, ws: ClientConnection, connection: _Connection) -> None:
        parser = self._adapter.new_parser()
        try:
            async for frame in ws:
                if not self._handle(frame, parser, connection):
                    return
        except ConnectionClosedError as exc:
            connection.end("error", repr(exc))
        connection.end("closed", f"close code {ws.close_code}")

    def _handle(self, frame: str | bytes, parser: Parser, connection: _Connection) -> bool:
        """Parse one frame and deliver its quotes; return False when the venue asks us to reconnect."""
        received_ns = self._wall_clock_ns()
        self._last_frame_monotonic = time.monotonic()
        connection.frames += 1
        self._messages_total.inc()
        self._last_message_ts.set(received_ns / 1e9)
        if self._on_frame is not None:
            self._on_frame(frame, received_ns)
        try:
            quotes = parser.parse(frame, received_ns)
        except ParseError as exc:
            self._count_parse_error(exc, frame)
            return True
        except ReconnectRequested as exc:
            _log.warning("ws_server_shutdown", detail=str(exc))
            connection.end("server_shutdown", str(exc))
            return False
        for quote in quotes:
            self._on_quote(quote)
        if quotes:
            connection.quotes += len(quotes)
            self._quotes_total.inc(len(quotes))
        return True

    def _count_parse_error(self, exc: ParseError, frame: str | bytes) -> None:
        self._parse_errors += 1
        self._parse_errors_total.inc()
        # A venue that changes its format would otherwise flood the log at message rate.
        if self._parse_errors == 1 or self._parse_errors % _PARSE_ERROR_LOG_EVERY == 0:
            _log.warning(
                "ws_parse_error", error=str(exc), parse_errors=self._parse_errors, frame=frame_sample(frame)
            )

    async def _watch(self, ws: ClientConnection, connection: _Connection) -> None:
        """Close the connection once it has been silent too long or reaches the venue's maximum age."""
        max_age_s = self._adapter.max_connection_age_s
        age_deadline = math.inf if max_age_s is None else connection.opened_at + max_age_s
        while True:
            now = time.monotonic()
            last_frame = max(connection.opened_at, self._last_frame_monotonic or 0.0)
            silence_deadline = last_frame + self._silence_timeout_s
            if now >= age_deadline:
                connection.end("max_age", f"connection age reached {max_age_s} s")
                break
            if now >= silence_deadline:
                silent_s = round(now - last_frame, 3)
                _log.warning("ws_silence_reconnect", silent_s=silent_s)
                connection.end("silence", f"no frame for {silent_s} s")
                break
            await asyncio.sleep(min(age_deadline, silence_deadline) - now)
        await ws.close(reason=connection.end_reason or "")

    async def _keepalive(self, ws: ClientConnection, message: str, interval_s: float) -> None:
        """Send the venue's app-level ping every `interval_s` seconds."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await ws.send(message)
            except ConnectionClosed:
                return
