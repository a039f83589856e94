"""The one WebSocket connection runner every venue shares.

A `StreamRunner` keeps one venue connection alive for as long as it runs:
connect, subscribe, read frames into the adapter's parser and hand quotes to
`on_quote`; reopen on errors, closes, silence and the venue's forced cuts, with
capped, fully jittered exponential backoff between attempts that delivered
nothing. Per connection it owns named tasks in a TaskGroup: a watchdog
(silence and maximum age), when the venue needs one an app-level keepalive,
and for REST-synced depth books a few workers fetching the snapshots asked for.

A depth parser raises `BookInvalid` when a symbol's book fails its integrity
rule. The runner hands it to the connection's `connectors.resync.BookResync`,
which counts it, tells `on_book_invalid` (which drops the symbol from the cache
at once) and resyncs that symbol without disturbing the others: by REST
snapshot, by the adapter's resync messages, or else by having the runner reopen
the connection (see `connectors.base`).
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import aiohttp
import structlog
from aiohttp import ClientWebSocketResponse, WSMsgType

from connectors import metrics
from connectors.base import Parser, VenueAdapter, frame_sample
from connectors.book import BookInvalid
from connectors.errors import ParseError, ReconnectRequested, VenueConnectionError
from connectors.metrics import ReconnectReason
from connectors.resync import SEND_FAILED, BookResync
from connectors.types import Quote

ConnectionState = Literal["idle", "connecting", "streaming", "backoff", "stopped"]

_MAX_FRAME_BYTES: Final = 16 * 2**20
_OPEN_TIMEOUT_S: Final = 10.0
# Bounds how long a silent (possibly dead) peer can hold up a reconnect.
_CLOSE_TIMEOUT_S: Final = 2.0
# A WebSocket ping after this long without a frame, and the connection closed when its pong
# does not come within half of it: liveness on a quiet link, besides the silence watchdog.
_HEARTBEAT_S: Final = 20.0
# 1006: the connection ended without a close frame (RFC 6455 7.1.5).
_ABNORMAL_CLOSE_CODES: Final = frozenset({None, 1006})
_DATA: Final = (WSMsgType.TEXT, WSMsgType.BINARY)
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
    """What one open connection delivered and why it ended, and the resync work it has under way."""

    opened_at: float
    ws: ClientWebSocketResponse
    parser: Parser
    resync: BookResync
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
        on_book_invalid: Callable[[str, str, str], None] | None = None,
        on_disconnect: Callable[[str, Sequence[str]], None] | None = None,
    ) -> None:
        """Prepare to stream `adapter`'s symbols; raise ValueError on non-positive durations.

        `on_frame(frame, received_ns)`, when given, sees every raw frame before it
        is parsed (what `smartroute record` writes to disk).
        `on_book_invalid(venue, symbol, reason)` is called as soon as a symbol's
        book is discarded, before its resync starts: nothing built on that book
        may be served any more. `on_disconnect(venue, symbols)` is called as soon as
        a connection that delivered quotes has ended, before the close handshake and
        any backoff: none of its books is current any more.
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
        self._on_book_invalid = on_book_invalid
        self._on_disconnect = on_disconnect
        self._state: ConnectionState = "idle"
        self._connects = 0
        self._last_frame_monotonic: float | None = None
        self._parse_errors = 0
        venue = adapter.venue
        metrics.init_venue_metrics(venue)
        self._frames = metrics.frame_counters(venue)
        self._parse_errors_total = metrics.WS_PARSE_ERRORS.labels(venue)
        self._connected = metrics.WS_CONNECTED.labels(venue)

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

        Exceptions raised by `on_quote` or `on_book_invalid` are the caller's bugs:
        they end the run, wrapped in an ExceptionGroup by the connection's task group.
        """
        with structlog.contextvars.bound_contextvars(venue=self._adapter.venue):
            attempt = 0
            reason: ReconnectReason
            # trust_env: HTTPS_PROXY/NO_PROXY from the environment apply, as for REST calls.
            http = aiohttp.ClientSession(trust_env=True)
            try:
                while True:
                    try:
                        connection = await self._session(http)
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
                await http.close()
                await self._adapter.close()

    async def _back_off(self, attempt: int, reason: ReconnectReason, detail: str) -> None:
        delay_s = self._backoff(attempt)
        self._state = "backoff"
        _log.info("ws_backoff", delay_s=round(delay_s, 3), attempt=attempt, reason=reason, detail=detail)
        await asyncio.sleep(delay_s)

    async def _session(self, http: aiohttp.ClientSession) -> _Connection:
        """Open one connection, stream it until it ends and return what it delivered."""
        url = self._adapter.connect_url()
        self._state = "connecting"
        _log.info("ws_connecting", url=url)
        try:
            async with asyncio.timeout(_OPEN_TIMEOUT_S):
                ws = await http.ws_connect(
                    url,
                    timeout=aiohttp.ClientWSTimeout(ws_close=_CLOSE_TIMEOUT_S),
                    heartbeat=_HEARTBEAT_S,
                    max_msg_size=_MAX_FRAME_BYTES,
                )
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            raise VenueConnectionError(f"cannot connect to {url}: {exc!r}") from exc
        parser = self._adapter.new_parser()
        resync = BookResync(
            self._adapter,
            parser,
            send=functools.partial(self._send_paced, ws),
            backoff=self._backoff,
            wall_clock_ns=self._wall_clock_ns,
            on_book_invalid=self._on_book_invalid,
            parse_error=self._count_parse_error,
        )
        connection = _Connection(opened_at=time.monotonic(), ws=ws, parser=parser, resync=resync)
        self._connects += 1
        self._connected.set(1)
        _log.info("ws_connected", url=url, connects=self._connects)
        try:
            await self._stream(ws, connection)
        except (OSError, aiohttp.ClientError) as exc:
            connection.end("error", repr(exc))
        finally:
            self._connected.set(0)
            if connection.quotes and self._on_disconnect is not None:
                self._on_disconnect(self._adapter.venue, self._adapter.symbols)
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

    async def _stream(self, ws: ClientWebSocketResponse, connection: _Connection) -> None:
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
            helpers.extend(
                connection.resync.start(
                    group,
                    deliver=functools.partial(self._deliver, connection=connection),
                    reopen=functools.partial(self._reopen, connection),
                )
            )
            await self._read(ws, connection)
            # The connection is over: nothing is left to watch, keep alive or resync.
            for helper in helpers:
                helper.cancel()
            connection.resync.cancel()

    async def _subscribe(self, ws: ClientWebSocketResponse) -> None:
        messages = self._adapter.subscribe_messages()
        await self._send_paced(ws, messages)
        _log.info("ws_subscribed", messages=len(messages), symbols=len(self._adapter.symbols))

    async def _send_paced(self, ws: ClientWebSocketResponse, messages: list[str]) -> None:
        for number, message in enumerate(messages):
            if number:
                await asyncio.sleep(self._adapter.subscribe_interval_s)
            await ws.send_str(message)

    async def _read(self, ws: ClientWebSocketResponse, connection: _Connection) -> None:
        handle, receive, resync = self._handle, ws.receive, connection.resync
        while True:
            message = await receive()
            if message.type in _DATA:
                if not handle(message.data, connection):
                    return
                if resync.outbox:
                    messages, resync.outbox = resync.outbox, []
                    await self._send_paced(ws, messages)
            elif message.type is WSMsgType.ERROR:
                connection.end("error", repr(message.data))
                return
            elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                if ws.close_code in _ABNORMAL_CLOSE_CODES:
                    connection.end("error", f"connection lost without a close frame ({ws.exception()!r})")
                connection.end("closed", f"close code {ws.close_code}")
                return
            # PING and PONG are answered and consumed by aiohttp (autoping); nothing else is sent.

    def _handle(self, frame: str | bytes, connection: _Connection) -> bool:
        """Parse one frame and deliver its quotes; return False when the connection must be reopened."""
        received_ns = self._wall_clock_ns()
        self._last_frame_monotonic = time.monotonic()
        connection.frames += 1
        frames = self._frames
        frames.messages += 1
        frames.last_message_ns = received_ns
        if self._on_frame is not None:
            self._on_frame(frame, received_ns)
        try:
            quotes = connection.parser.parse(frame, received_ns)
        except BookInvalid as exc:
            if connection.resync.invalid(exc):
                return True
            connection.end("book_invalid", str(exc))
            return False
        except ParseError as exc:
            self._count_parse_error(exc, frame)
            return True
        except ReconnectRequested as exc:
            _log.warning("ws_server_shutdown", detail=str(exc))
            connection.end("server_shutdown", str(exc))
            return False
        connection.resync.synced(quotes)
        self._deliver(quotes, connection)
        return True

    def _deliver(self, quotes: list[Quote], connection: _Connection) -> None:
        if quotes:
            on_quote = self._on_quote
            for quote in quotes:
                on_quote(quote)
            connection.quotes += len(quotes)
            self._frames.quotes += len(quotes)
        connection.resync.queue_snapshots()

    async def _reopen(self, connection: _Connection, exc: BookInvalid) -> None:
        """End the connection because `exc`'s book cannot be resynced on it."""
        connection.end("book_invalid", str(exc))
        await connection.ws.close()

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(
            attempt, initial_s=self._backoff_initial_s, max_s=self._backoff_max_s, rng=self._rng
        )

    def _count_parse_error(self, exc: ParseError, frame: str | bytes) -> None:
        self._parse_errors += 1
        self._parse_errors_total.inc()
        # A venue that changes its format would otherwise flood the log at message rate.
        if self._parse_errors == 1 or self._parse_errors % _PARSE_ERROR_LOG_EVERY == 0:
            _log.warning(
                "ws_parse_error", error=str(exc), parse_errors=self._parse_errors, frame=frame_sample(frame)
            )

    async def _watch(self, ws: ClientWebSocketResponse, connection: _Connection) -> None:
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
        await ws.close(message=(connection.end_reason or "").encode())

    async def _keepalive(self, ws: ClientWebSocketResponse, message: str, interval_s: float) -> None:
        """Send the venue's app-level ping every `interval_s` seconds."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await ws.send_str(message)
            except SEND_FAILED:
                return
