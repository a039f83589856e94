"""One simulated venue's server: its WebSocket connections, its REST routes and its counters.

Every connection gets a bounded outbox drained by its own writer task, so a
slow reader never holds back the others: when its outbox overflows it is cut
(as venues cut slow consumers) and counted. Reading, rate limits, idle and
no-subscription cut-offs follow the venue's `VenueRules`; what messages mean is
the venue protocol's business (`VenueProtocol`), what the books hold is
`VenueBooks`'. A plain HTTP GET (no WebSocket upgrade) on the same port is
answered by the protocol's REST routes.
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

from connectors.sim.books import VenueBooks
from connectors.sim.depth import DepthEvent
from connectors.sim.market import BookTop, SimulatorError
from connectors.sim.protocol import BookState, MarketView, RateWindow, Reply, VenueProtocol, VenueRules

_log = structlog.get_logger(__name__)
_CLOSE_TIMEOUT_S: Final = 2.0


class SubscriptionTimeout(SimulatorError, TimeoutError):
    """`wait_subscribed` gave up: the expected subscriptions did not arrive in time."""


@dataclass(eq=False, slots=True)
class _Connection:
    ws: ServerConnection
    protocol: VenueProtocol
    outbox: asyncio.Queue[str | bytes]
    last_seen: float
    last_sent: float
    rate: RateWindow | None
    open: bool = True


class VenueEndpoint:
    """Serve one venue's protocol on one port and keep its bookkeeping."""

    def __init__(
        self,
        protocol: type[VenueProtocol],
        rules: VenueRules,
        books: VenueBooks,
        symbols: Sequence[str],
        *,
        port: int,
        send_queue_frames: int,
        clock_ns: Callable[[], int],
        checksums: bool = False,
    ) -> None:
        self.protocol = protocol
        self.rules = rules
        self.books = books
        self.port = port
        self.silent = False
        self.stalled_until = 0.0
        self.accepted = 0
        self.slow_drops = 0
        self.control: list[object] = []
        self._symbols = {protocol.venue_symbol(s): s for s in symbols}  # venue form → canonical
        self.checksums = checksums or protocol.has_checksums
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

    @property
    def stalled(self) -> bool:
        """Tell whether market data is held back right now (sockets and control stay up)."""
        return asyncio.get_running_loop().time() < self.stalled_until

    async def listen(self, host: str) -> None:
        """Bind the server; REST GETs go to the protocol's routes, an unknown path gets HTTP 404."""
        self._server = await serve(
            self._serve_connection,
            host,
            self.port,
            process_request=self._route,
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

    def publish(self, symbol: str, top: BookTop | None, *, evolve: bool = False) -> None:
        """Apply a new BBO (and/or an evolution tick) to the symbol's books and send what changed."""
        published = self.books.publish(symbol, top, evolve=evolve)
        if published.state is not None:
            self._broadcast(symbol, published.state)
        if published.event is not None:
            self._broadcast_depth(published.event, copies=2 if published.duplicate else 1)

    def lose_message(self, symbol: str) -> None:
        """Change the symbol's book and encode the depth message for it, but deliver it to nobody."""
        event = self.books.nudge(symbol)
        now_ns = self._clock_ns()
        for conn in list(self._connections):
            conn.protocol.encode_depth(event, now_ns)  # numbered per connection, then lost

    def repush(self, interval_s: float) -> float:
        """Re-send every BBO unchanged for `interval_s` (same ids, fresh ts); return seconds to the next."""
        now = asyncio.get_running_loop().time()
        for symbol, state in list(self.books.bbo.items()):
            if now - self._last_push.get(symbol, now - interval_s) >= interval_s:
                self._broadcast(symbol, state)
        due = min((self._last_push[s] + interval_s for s in self.books.bbo), default=now + interval_s)
        return max(due - now, interval_s / 100)

    def heartbeat(self) -> None:
        """Offer each connection the venue's heartbeat if one is due (a stall keeps them, silence not)."""
        interval = self.rules.heartbeat_interval_s
        if self.silent or interval is None:
            return
        now, now_ns = asyncio.get_running_loop().time(), self._clock_ns()
        for conn in list(self._connections):
            # Half an interval of slack: the last send lands a little after the previous beat.
            frame = conn.protocol.heartbeat(now_ns, idle=now - conn.last_sent >= interval / 2)
            if frame is not None:
                self._offer(conn, frame)

    def send_all(self, frame: str | bytes) -> None:
        """Queue a frame as is on every open connection."""
        for conn in list(self._connections):
            self._offer(conn, frame)

    def announce_shutdown(self) -> list[_Connection]:
        """Queue the venue's shutdown event on every connection and return those connections."""
        conns = list(self._connections)
        for conn in conns:
            frame = conn.protocol.shutdown_frame(self._clock_ns())
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
        """Return once `count` market-data subscriptions to `symbol` were received, across connections."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: self._subscriptions[symbol] >= count)
        except TimeoutError as exc:
            seen = self._subscriptions[symbol]
            raise SubscriptionTimeout(
                f"{self.protocol.venue} {symbol}: {seen} of {count} subscriptions within {timeout_s} s"
            ) from exc

    def market_view(self) -> MarketView:
        """Return a read-only view of the venue's books, for snapshots and REST."""
        return MarketView(
            symbols=self._symbols,
            depth=lambda symbol: self.books.depth(symbol).snapshot(),
            now_ms=self._clock_ns() // 1_000_000,
        )

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade:
            return None if self.protocol.accepts_path(request.path) else _not_found(connection)
        answer = self.protocol.rest(request.path, self.market_view()) if self.protocol.has_rest else None
        if answer is None:
            return _not_found(connection)
        response = connection.respond(answer.status, orjson.dumps(answer.body).decode())
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    async def _serve_connection(self, ws: ServerConnection) -> None:
        now = asyncio.get_running_loop().time()
        limit = self.rules.max_messages_per_s
        path = ws.request.path if ws.request is not None else "/"
        protocol = self.protocol(path, self._symbols, str(uuid.uuid4()), checksums=self.checksums)
        conn = _Connection(ws, protocol, asyncio.Queue(self._send_queue_frames), now, now, None)
        conn.rate = RateWindow(limit) if limit is not None else None
        self._connections.add(conn)
        self.accepted += 1
        log = self._log.bind(conn_id=protocol.conn_id)
        log.debug("sim_connection_opened", path=path)
        try:
            async with asyncio.TaskGroup() as group:
                helpers = [group.create_task(self._write_loop(conn), name="sim-writer")]
                if self.rules.idle_timeout_s is not None:
                    idle = self._watch_idle(conn, self.rules.idle_timeout_s, log)
                    helpers.append(group.create_task(idle, name="sim-idle-watch"))
                if self.rules.subscribe_timeout_s is not None:
                    deadline = self._watch_subscribe(conn, self.rules.subscribe_timeout_s, log)
                    helpers.append(group.create_task(deadline, name="sim-subscribe-watch"))
                try:
                    await self._subscribed(conn, protocol.url_reply())
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
                reply = conn.protocol.handle(text, self._clock_ns())
                self.control.append(reply.message)
                for frame in reply.frames:
                    self._offer(conn, frame)
                await self._subscribed(conn, reply)
        except ConnectionClosed:
            return

    async def _subscribed(self, conn: _Connection, reply: Reply) -> None:
        if not self.silent and not self.stalled:
            now_ns = self._clock_ns()
            for key, symbol in reply.snapshots:
                state = self.books.bbo.get(symbol)
                depth = self.books.depth(symbol).snapshot()
                frame = conn.protocol.encode_snapshot(key, symbol, state, depth, now_ns)
                if frame is not None:
                    self._offer(conn, frame)
        symbols = reply.subscribed + reply.depth_subscribed
        if symbols:
            async with self._changed:
                self._subscriptions.update(symbols)
                self._changed.notify_all()

    @staticmethod
    async def _write_loop(conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                frame = await conn.outbox.get()
                try:
                    await conn.ws.send(frame)
                    conn.last_sent = loop.time()
                finally:
                    conn.outbox.task_done()
        except ConnectionClosed:
            return
        finally:
            conn.open = False
            while not conn.outbox.empty():  # release flush() waiters
                conn.outbox.get_nowait()
                conn.outbox.task_done()

    async def _watch_idle(self, conn: _Connection, timeout_s: float, log: Any) -> None:
        loop = asyncio.get_running_loop()

        def last_activity() -> float:
            return max(conn.last_seen, conn.last_sent) if self.rules.idle_counts_sent else conn.last_seen

        # Re-arms on every message (the last activity moves), so poll rather than wait on an event.
        while (remaining := last_activity() + timeout_s - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)
        log.info("sim_idle_timeout", idle_timeout_s=timeout_s)
        await conn.ws.close(1000, "idle timeout")

    @staticmethod
    async def _watch_subscribe(conn: _Connection, timeout_s: float, log: Any) -> None:
        await asyncio.sleep(timeout_s)
        if not conn.protocol.has_subscriptions:
            log.info("sim_subscribe_timeout", subscribe_timeout_s=timeout_s)
            await conn.ws.close(1000, "no subscription")

    def _broadcast(self, symbol: str, state: BookState) -> None:
        self._last_push[symbol] = asyncio.get_running_loop().time()
        self._deliver(lambda protocol, now_ns: protocol.encode(symbol, state, now_ns))

    def _broadcast_depth(self, event: DepthEvent, copies: int) -> None:
        self._deliver(lambda protocol, now_ns: protocol.encode_depth(event, now_ns) * copies)

    def _deliver(self, encode: Callable[[VenueProtocol, int], tuple[str, ...]]) -> None:
        # Held-back data is still encoded: a venue that numbers messages per connection must
        # show the loss as a gap later, never resume as if nothing had been missed.
        deliver = not (self.silent or self.stalled)
        now_ns = self._clock_ns()
        for conn in list(self._connections):
            for frame in encode(conn.protocol, now_ns):
                if deliver:
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


def _not_found(connection: ServerConnection) -> Response:
    return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")


def _parse_or_raw(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
