"""One simulated venue's WebSocket server: its connections, the books it serves and its counters.

Every connection gets a bounded outbox drained by its own writer task, so a
slow reader never holds back the others: when its outbox overflows it is cut
(as venues cut slow consumers) and counted. Reading, rate limits and idle
cut-offs follow the venue's `VenueRules`; what messages mean is the venue
protocol's business (`VenueProtocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import orjson
import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from connectors.sim.market import BookTop, SimulatorError
from connectors.sim.protocol import BookState, RateWindow, VenueProtocol, VenueRules

_log = structlog.get_logger(__name__)
_FIRST_UPDATE_ID: Final = 1_000_001
_FIRST_SEQ: Final = 50_000_000_001
_CLOSE_TIMEOUT_S: Final = 2.0


class SubscriptionTimeout(SimulatorError, TimeoutError):
    """`wait_subscribed` gave up: the expected subscriptions did not arrive in time."""


@dataclass(eq=False, slots=True)
class _Connection:
    ws: ServerConnection
    protocol: VenueProtocol
    outbox: asyncio.Queue[str | bytes]
    last_seen: float
    rate: RateWindow | None
    open: bool = True


class VenueEndpoint:
    """Serve one venue's protocol on one port and keep its bookkeeping."""

    def __init__(
        self,
        protocol: type[VenueProtocol],
        rules: VenueRules,
        symbols: Sequence[str],
        *,
        port: int,
        send_queue_frames: int,
        clock_ns: Callable[[], int],
    ) -> None:
        self.protocol = protocol
        self.rules = rules
        self.port = port
        self.silent = False
        self.accepted = 0
        self.slow_drops = 0
        self.control: list[object] = []
        self.books: dict[str, BookState] = {}
        self._symbols = {protocol.venue_symbol(s): s for s in symbols}  # venue form → canonical
        self._send_queue_frames = send_queue_frames
        self._clock_ns = clock_ns
        self._server: Server | None = None
        self._connections: set[_Connection] = set()
        self._last_push: dict[str, float] = {}
        self._subscriptions: Counter[str] = Counter()
        self._changed = asyncio.Condition()
        self._log = _log.bind(venue=protocol.venue)

    @property
    def symbols(self) -> tuple[str, ...]:
        """Return the canonical symbols this venue serves."""
        return tuple(self._symbols.values())

    async def listen(self, host: str) -> None:
        """Bind the server; an unknown URL path is answered with HTTP 404."""

        def route(connection: ServerConnection, request: Request) -> Response | None:
            if self.protocol.accepts_path(request.path):
                return None
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")

        self._server = await serve(
            self._serve_connection,
            host,
            self.port,
            process_request=route,
            compression=None,
            ping_interval=self.rules.ping_interval_s,
            ping_timeout=self.rules.ping_timeout_s,
            close_timeout=_CLOSE_TIMEOUT_S,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, close every connection and wait for their handlers to finish."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def seed(self, symbol: str, top: BookTop) -> None:
        """Set the symbol's current book without sending it (the state before anyone connects)."""
        self.books[symbol] = BookState(top, _FIRST_UPDATE_ID, _FIRST_SEQ, self._now_ms())

    def publish(self, symbol: str, top: BookTop) -> None:
        """Make `top` the symbol's current book (next update id) and send it to its subscribers."""
        previous = self.books.get(symbol)
        ids = (previous.update_id + 1, previous.seq + 1) if previous else (_FIRST_UPDATE_ID, _FIRST_SEQ)
        state = BookState(top, ids[0], ids[1], self._now_ms())
        self.books[symbol] = state
        self._broadcast(symbol, state)

    def repush(self, interval_s: float) -> float:
        """Re-send every book unchanged for `interval_s` (same ids, fresh ts); return seconds to the next."""
        now = asyncio.get_running_loop().time()
        for symbol, state in list(self.books.items()):
            if now - self._last_push.get(symbol, now - interval_s) >= interval_s:
                self._broadcast(symbol, state)
        due = min((self._last_push[s] + interval_s for s in self.books), default=now + interval_s)
        return max(due - now, interval_s / 100)

    def send_all(self, frame: str | bytes) -> None:
        """Queue a frame as is on every open connection."""
        for conn in list(self._connections):
            self._offer(conn, frame)

    def announce_shutdown(self) -> list[_Connection]:
        """Queue the venue's shutdown event on every connection and return those connections."""
        conns = list(self._connections)
        for conn in conns:
            frame = conn.protocol.shutdown_frame(self._now_ms())
            if frame is not None:
                self._offer(conn, frame)
        return conns

    @staticmethod
    async def close_connections(conns: Sequence[_Connection], code: int, reason: str) -> None:
        """Close the given connections with a close frame."""
        await asyncio.gather(*(conn.ws.close(code, reason) for conn in conns))

    async def drop_all(self) -> int:
        """Abort every connection at the TCP level (no close frame); return how many."""
        conns = list(self._connections)
        for conn in conns:
            conn.ws.transport.abort()
        await asyncio.gather(*(conn.ws.wait_closed() for conn in conns))
        return len(conns)

    async def flush(self) -> None:
        """Wait until every connection has written out its outbox."""
        await asyncio.gather(*(conn.outbox.join() for conn in list(self._connections)))

    async def wait_subscribed(self, symbol: str, count: int, timeout_s: float) -> None:
        """Return once `count` BBO subscriptions to `symbol` were received, across connections."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: self._subscriptions[symbol] >= count)
        except TimeoutError as exc:
            seen = self._subscriptions[symbol]
            raise SubscriptionTimeout(
                f"{self.protocol.venue} {symbol}: {seen} of {count} subscriptions within {timeout_s} s"
            ) from exc

    async def _serve_connection(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        limit = self.rules.max_messages_per_s
        path = ws.request.path if ws.request is not None else "/"
        conn = _Connection(
            ws=ws,
            protocol=self.protocol(path, self._symbols, str(uuid.uuid4())),
            outbox=asyncio.Queue(self._send_queue_frames),
            last_seen=loop.time(),
            rate=RateWindow(limit) if limit is not None else None,
        )
        self._connections.add(conn)
        self.accepted += 1
        log = self._log.bind(conn_id=conn.protocol.conn_id)
        log.debug("sim_connection_opened", path=path)
        try:
            async with asyncio.TaskGroup() as group:
                helpers = [group.create_task(self._write_loop(conn), name="sim-writer")]
                if self.rules.idle_timeout_s is not None:
                    idle = self._watch_idle(conn, self.rules.idle_timeout_s, log)
                    helpers.append(group.create_task(idle, name="sim-idle-watch"))
                try:
                    await self._subscribed(conn, conn.protocol.url_subscriptions)
                    await self._read_loop(conn, log)
                finally:
                    for task in helpers:
                        task.cancel()
        finally:
            conn.open = False
            self._connections.discard(conn)
            log.debug("sim_connection_closed", close_code=ws.close_code)

    async def _read_loop(self, conn: _Connection, log: Any) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for message in conn.ws:
                conn.last_seen = loop.time()
                if conn.rate is not None and not conn.rate.hit(conn.last_seen):
                    log.info("sim_rate_limit_exceeded", limit=self.rules.max_messages_per_s)
                    # Answers to the messages within the limit go out before the close frame.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                            await conn.outbox.join()
                    await conn.ws.close(1008, "Too many requests")
                    return
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                if self.silent:  # a hung venue: reads, answers nothing
                    self.control.append(_parse_or_raw(text))
                    continue
                reply = conn.protocol.handle(text)
                self.control.append(reply.message)
                for frame in reply.frames:
                    self._offer(conn, frame)
                await self._subscribed(conn, reply.subscribed)
        except ConnectionClosed:
            return

    async def _subscribed(self, conn: _Connection, symbols: Sequence[str]) -> None:
        if not symbols:
            return
        if conn.protocol.snapshot_on_subscribe and not self.silent:
            for symbol in dict.fromkeys(symbols):
                state = self.books.get(symbol)
                frame = conn.protocol.encode(symbol, state, self._now_ms()) if state else None
                if frame is not None:
                    self._offer(conn, frame)
        async with self._changed:
            self._subscriptions.update(symbols)
            self._changed.notify_all()

    @staticmethod
    async def _write_loop(conn: _Connection) -> None:
        try:
            while True:
                frame = await conn.outbox.get()
                try:
                    await conn.ws.send(frame)
                finally:
                    conn.outbox.task_done()
        except ConnectionClosed:
            return
        finally:
            conn.open = False
            while not conn.outbox.empty():  # release flush() waiters
                conn.outbox.get_nowait()
                conn.outbox.task_done()

    @staticmethod
    async def _watch_idle(conn: _Connection, timeout_s: float, log: Any) -> None:
        loop = asyncio.get_running_loop()
        # Re-arms on every incoming message (last_seen moves), so poll rather than wait on an event.
        while (remaining := conn.last_seen + timeout_s - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)
        log.info("sim_idle_timeout", idle_timeout_s=timeout_s)
        await conn.ws.close(1000, "idle timeout")

    def _broadcast(self, symbol: str, state: BookState) -> None:
        self._last_push[symbol] = asyncio.get_running_loop().time()
        if self.silent:
            return
        now_ms = self._now_ms()
        for conn in list(self._connections):
            frame = conn.protocol.encode(symbol, state, now_ms)
            if frame is not None:
                self._offer(conn, frame)

    def _offer(self, conn: _Connection, frame: str | bytes) -> None:
        if not conn.open:
            return
        try:
            conn.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            # A slow reader must not hold back anyone else: cut it, as venues do.
            conn.open = False
            self.slow_drops += 1
            conn.ws.transport.abort()
            self._log.warning("sim_slow_client_dropped", conn_id=conn.protocol.conn_id)

    def _now_ms(self) -> int:
        return self._clock_ns() // 1_000_000


def _parse_or_raw(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
