"""The exchange simulator: one loopback WebSocket server per venue, speaking that venue's real protocol.

`ExchangeSimulator` owns one `VenueEndpoint` per venue, the price model and its
ticker, and a control API for tests and demos: scripted quotes, raw frames,
dropped or silent connections, venue shutdown events. Venue protocols live one
per module behind the `SIM_VENUES` registry.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Final, Self

import structlog

from connectors.sim.binance import BinanceProtocol
from connectors.sim.bybit import BybitProtocol
from connectors.sim.endpoint import VenueEndpoint
from connectors.sim.market import DEFAULT_DISLOCATION_PROBABILITY, BookTop, MarketModel, SimulatorError
from connectors.sim.protocol import VenueProtocol, VenueRules

SIM_VENUES: Final[dict[str, type[VenueProtocol]]] = {
    BinanceProtocol.venue: BinanceProtocol,
    BybitProtocol.venue: BybitProtocol,
}

_log = structlog.get_logger(__name__)
_SYMBOL: Final = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}")


class ExchangeSimulator:
    """Serve venues' market-data protocols on loopback from a seeded price model or scripted quotes.

    `autoplay=False` leaves the model still: only `push_quote` (and `advance`)
    publish. `rules` overrides a venue's per-connection rules (e.g. a short
    Bybit re-push period or idle timeout); `send_queue_frames` bounds each
    connection's outbox (a connection whose outbox overflows is dropped and
    counted); `shutdown_grace_s` is how long `server_shutdown` waits before
    closing; `clock_ns` gives the wall-clock time stamped on frames.
    """

    def __init__(
        self,
        venues: Sequence[str] = ("binance", "bybit"),
        symbols: Sequence[str] = ("BTC-USDT", "ETH-USDT"),
        *,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] | None = None,
        seed: int | None = None,
        autoplay: bool = True,
        tick_interval_s: float = 0.05,
        dislocation_probability: float = DEFAULT_DISLOCATION_PROBABILITY,
        rules: Mapping[str, VenueRules] | None = None,
        send_queue_frames: int = 10_000,
        shutdown_grace_s: float = 1.0,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        ports, rules = ports or {}, rules or {}
        _check_settings(venues, symbols, ports, rules)
        if send_queue_frames < 1 or shutdown_grace_s < 0:
            raise SimulatorError("send_queue_frames must be >= 1 and shutdown_grace_s >= 0")
        self.model = MarketModel(
            venues,
            symbols,
            seed=seed,
            tick_interval_s=tick_interval_s,
            dislocation_probability=dislocation_probability,
        )
        self._host = host
        self._autoplay = autoplay
        self._tick_interval_s = tick_interval_s
        self._shutdown_grace_s = shutdown_grace_s
        self._endpoints = {
            venue: VenueEndpoint(
                SIM_VENUES[venue],
                rules.get(venue, SIM_VENUES[venue].rules),
                symbols,
                port=ports.get(venue, 0),
                send_queue_frames=send_queue_frames,
                clock_ns=clock_ns,
            )
            for venue in venues
        }
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: asyncio.Future[None] | None = None
        self._state = "new"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind every venue's server, then start the ticker (if autoplay) and the venues' re-push loops."""
        if self._state != "new":
            raise SimulatorError("an ExchangeSimulator can be started only once")
        self._state = "started"
        self._failure = asyncio.get_running_loop().create_future()
        try:
            for endpoint in self._endpoints.values():
                await endpoint.listen(self._host)
        except OSError as exc:
            await self.close()
            raise SimulatorError(f"cannot listen on {self._host}: {exc}") from exc
        if self._autoplay:
            for (venue, symbol), top in self.model.quotes().items():
                self._endpoints[venue].seed(symbol, top)
            self._spawn(self._autoplay_loop(), "sim-autoplay")
        for venue, endpoint in self._endpoints.items():
            if endpoint.rules.repush_interval_s is not None:
                self._spawn(
                    self._repush_loop(endpoint, endpoint.rules.repush_interval_s), f"sim-repush-{venue}"
                )
        _log.info("sim_started", urls={venue: self.ws_url(venue) for venue in self._endpoints})

    async def close(self) -> None:
        """Stop the ticker, close every connection and server; safe to call more than once."""
        if self._state == "closed":
            return
        self._state = "closed"
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for endpoint in self._endpoints.values():
            await endpoint.close()
        if self._failure is not None and self._failure.done() and not self._failure.cancelled():
            self._failure.exception()  # mark retrieved; the failure was logged when it happened
        _log.info("sim_closed")

    def ws_url(self, venue: str) -> str:
        """Return the `ws_url` a client configures for the venue (Binance: the base; Bybit: the spot path)."""
        endpoint = self._endpoint(venue)
        if endpoint.port == 0:
            raise SimulatorError(f"{venue} has no port yet: start the simulator first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"ws://{host}:{endpoint.port}{endpoint.protocol.url_path}"

    async def push_quote(
        self,
        venue: str,
        symbol: str,
        bid: Decimal | str,
        bid_qty: Decimal | str,
        ask: Decimal | str,
        ask_qty: Decimal | str,
    ) -> None:
        """Make this the venue's current quote and send it to every connection subscribed to the symbol."""
        endpoint = self._endpoint(venue)
        if symbol not in endpoint.symbols:
            raise SimulatorError(f"{symbol!r} is not simulated (symbols: {list(endpoint.symbols)})")
        top = BookTop(
            bid=_decimal("bid", bid),
            bid_qty=_decimal("bid_qty", bid_qty),
            ask=_decimal("ask", ask),
            ask_qty=_decimal("ask_qty", ask_qty),
        )
        endpoint.publish(symbol, top)
        await asyncio.sleep(0)  # let writers run, so a tight push loop does not overflow outboxes

    async def advance(self, ticks: int = 1) -> None:
        """Step the price model `ticks` times by hand and publish what changed, as autoplay does."""
        for _ in range(ticks):
            self._step_model()
            await asyncio.sleep(0)

    async def send_raw(self, venue: str, frame: str | bytes) -> None:
        """Send a frame as is (text for str, binary for bytes) to every open connection of the venue."""
        self._endpoint(venue).send_all(frame)
        await asyncio.sleep(0)

    async def flush(self, venue: str) -> None:
        """Wait until every connection of the venue has written out what was queued for it."""
        await self._endpoint(venue).flush()

    async def drop_connections(self, venue: str) -> None:
        """Abort every connection of the venue at the TCP level, without a close frame."""
        count = await self._endpoint(venue).drop_all()
        _log.info("sim_connections_dropped", venue=venue, count=count)

    def set_silent(self, venue: str, silent: bool) -> None:
        """Keep the venue's sockets open but answer nothing and publish nothing, until set back."""
        self._endpoint(venue).silent = silent
        _log.info("sim_silent_set", venue=venue, silent=silent)

    async def server_shutdown(self, venue: str = "binance") -> None:
        """Send the venue's shutdown event to every connection, then close them after the grace period."""
        endpoint = self._endpoint(venue)
        if not endpoint.protocol.announces_shutdown:
            raise SimulatorError(f"{venue} has no server shutdown event")
        conns = endpoint.announce_shutdown()
        self._spawn(self._close_later(endpoint, conns), f"sim-shutdown-{venue}")
        _log.info("sim_server_shutdown", venue=venue, connections=len(conns))

    async def wait_subscribed(
        self,
        venue: str,
        symbol: str,
        *,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - part of the simulator's published API
    ) -> None:
        """Return once `count` BBO subscriptions to the symbol were received, cumulative across connections.

        Raises `SubscriptionTimeout` (a `SimulatorError` and a `TimeoutError`) when they do not come in time.
        """
        endpoint = self._endpoint(venue)
        if symbol not in endpoint.symbols:
            raise SimulatorError(f"{symbol!r} is not simulated (symbols: {list(endpoint.symbols)})")
        await endpoint.wait_subscribed(symbol, count, timeout)

    def connections_accepted(self, venue: str) -> int:
        """Return how many WebSocket connections the venue has accepted so far."""
        return self._endpoint(venue).accepted

    def slow_disconnects(self, venue: str) -> int:
        """Return how many of the venue's connections were dropped because their outbox overflowed."""
        return self._endpoint(venue).slow_drops

    def subscribe_requests(self, venue: str) -> list[object]:
        """Return every control message the venue received, parsed (raw text if not JSON), in order."""
        return list(self._endpoint(venue).control)

    async def run_until_cancelled(self) -> None:
        """Start, log the venues' URLs, serve until cancelled (or a background task fails), then close."""
        await self.start()
        for venue in self._endpoints:
            _log.info("sim_listening", venue=venue, ws_url=self.ws_url(venue))
        assert self._failure is not None
        try:
            await self._failure
        finally:
            await self.close()

    def _step_model(self) -> None:
        for (venue, symbol), top in self.model.step().items():
            self._endpoints[venue].publish(symbol, top)

    async def _autoplay_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_interval_s)
            self._step_model()

    @staticmethod
    async def _repush_loop(endpoint: VenueEndpoint, interval_s: float) -> None:
        # A timer, not a wait for a condition: each pass says how long until the next book is due.
        while True:  # noqa: ASYNC110
            await asyncio.sleep(endpoint.repush(interval_s))

    async def _close_later(self, endpoint: VenueEndpoint, conns: Sequence[Any]) -> None:
        await asyncio.sleep(self._shutdown_grace_s)
        await endpoint.close_connections(conns, 1001, "server shutdown")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        _log.error("sim_task_failed", task=task.get_name(), exc_info=task.exception())
        if self._failure is not None and not self._failure.done():
            self._failure.set_exception(SimulatorError(f"simulator task {task.get_name()} failed"))

    def _endpoint(self, venue: str) -> VenueEndpoint:
        try:
            return self._endpoints[venue]
        except KeyError:
            raise SimulatorError(f"{venue!r} is not simulated (venues: {sorted(self._endpoints)})") from None


def _check_settings(
    venues: Sequence[str], symbols: Sequence[str], ports: Mapping[str, int], rules: Mapping[str, VenueRules]
) -> None:
    if isinstance(venues, str) or isinstance(symbols, str):
        raise SimulatorError("venues and symbols must be sequences of names, not one string")
    if not venues or any(v not in SIM_VENUES for v in venues) or len(set(venues)) != len(venues):
        raise SimulatorError(f"venues must be distinct names from {sorted(SIM_VENUES)}, got {list(venues)}")
    bad = [s for s in symbols if not isinstance(s, str) or not _SYMBOL.fullmatch(s)]
    if not symbols or bad or len(set(symbols)) != len(symbols):
        raise SimulatorError(f"symbols must be distinct canonical BASE-QUOTE names, got {list(symbols)}")
    for what, mapping in (("ports", ports), ("rules", rules)):
        if extra := set(mapping) - set(venues):
            raise SimulatorError(f"{what} given for venues that are not simulated: {sorted(extra)}")


def _decimal(name: str, value: Decimal | str) -> Decimal:
    if not isinstance(value, Decimal | str):
        raise SimulatorError(f"{name} must be a Decimal or a decimal string, got {value!r}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation as exc:
        raise SimulatorError(f"{name} must be a decimal number, got {value!r}") from exc
    if not number.is_finite() or number < 0:
        raise SimulatorError(f"{name} must be a finite, non-negative decimal, got {value!r}")
    return number
