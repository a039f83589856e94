"""The exchange simulator: one loopback server per venue, speaking that venue's real market-data protocol.

`ExchangeSimulator` owns one `VenueEndpoint` per venue, the price model and its
ticker, and a control API for tests and demos: scripted quotes, venue shutdown
events, and (`connectors.sim.faults`) raw frames, dropped, silent or stalled
connections and book faults (a lost message, a duplicate, a bad checksum, a
crossed top), each counted.
Venue protocols live one per module behind the `SIM_VENUES` registry.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, Self

import structlog

from connectors.sim.binance import BinanceProtocol
from connectors.sim.books import VenueBooks
from connectors.sim.bybit import BybitProtocol
from connectors.sim.checks import check_limits, check_settings, decimal_arg
from connectors.sim.coinbase import CoinbaseProtocol
from connectors.sim.endpoint import VenueEndpoint
from connectors.sim.faults import SimulatorFaults
from connectors.sim.kraken import KrakenProtocol
from connectors.sim.market import (
    DEFAULT_DISLOCATION_PROBABILITY,
    BookTop,
    MarketModel,
    SimulatorError,
    SymbolSpec,
)
from connectors.sim.okx import BOOKS_MAX_LEVELS, OkxProtocol
from connectors.sim.protocol import VenueProtocol, VenueRules
from connectors.types import Level

SIM_VENUES: Final[dict[str, type[VenueProtocol]]] = {
    BinanceProtocol.venue: BinanceProtocol,
    BybitProtocol.venue: BybitProtocol,
    OkxProtocol.venue: OkxProtocol,
    CoinbaseProtocol.venue: CoinbaseProtocol,
    KrakenProtocol.venue: KrakenProtocol,
}

_log = structlog.get_logger(__name__)


class ExchangeSimulator(SimulatorFaults):
    """Serve venues' market-data protocols on loopback from a seeded price model or scripted quotes.

    `autoplay=False` leaves the model still: only `push_quote` (and `advance`)
    publish. `rules` overrides a venue's per-connection rules (e.g. a short
    Bybit re-push period or idle timeout); `send_queue_frames` bounds each
    connection's outbox (a connection whose outbox overflows is dropped and
    counted); `shutdown_grace_s` is how long `server_shutdown` waits before
    closing; `clock_ns` gives the wall-clock time stamped on frames.
    `book_levels` is the depth each venue keeps per symbol (1..400);
    `okx_checksums` makes OKX send real `books` checksums instead of 0;
    `specs` overrides symbols' trading specs (tick, lot step, start price, ...).
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
        book_levels: int = 50,
        okx_checksums: bool = False,
        specs: Mapping[str, SymbolSpec] | None = None,
    ) -> None:
        ports, rules = ports or {}, rules or {}
        check_settings(venues, symbols, ports, rules, SIM_VENUES)
        check_limits(
            send_queue_frames=send_queue_frames,
            shutdown_grace_s=shutdown_grace_s,
            book_levels=book_levels,
            max_levels=BOOKS_MAX_LEVELS,
        )
        self.model = MarketModel(
            venues,
            symbols,
            seed=seed,
            tick_interval_s=tick_interval_s,
            dislocation_probability=dislocation_probability,
            specs=specs,
        )
        self._host = host
        self._autoplay = autoplay
        self._tick_interval_s = tick_interval_s
        self._shutdown_grace_s = shutdown_grace_s
        depth_rng = random.Random(None if seed is None else f"depth-{seed}")  # all venues: one stream

        def books(venue: str) -> VenueBooks:
            return VenueBooks(
                symbols,
                specs=specs or {},
                levels=book_levels,
                rng=depth_rng,
                view_depths=SIM_VENUES[venue].view_depths,
                clock_ms=lambda: clock_ns() // 1_000_000,
            )

        endpoints = {
            venue: VenueEndpoint(
                SIM_VENUES[venue],
                rules.get(venue, SIM_VENUES[venue].rules),
                books(venue),
                symbols,
                port=ports.get(venue, 0),
                send_queue_frames=send_queue_frames,
                clock_ns=clock_ns,
                checksums=okx_checksums and venue == OkxProtocol.venue,
            )
            for venue in venues
        }
        super().__init__(endpoints)
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
                self._endpoints[venue].books.seed(symbol, top)
            self._spawn(self._autoplay_loop(), "sim-autoplay")
        for venue, endpoint in self._endpoints.items():
            if endpoint.rules.repush_interval_s is not None:
                self._spawn(
                    self._repush_loop(endpoint, endpoint.rules.repush_interval_s), f"sim-repush-{venue}"
                )
            if endpoint.rules.heartbeat_interval_s is not None:
                beat = self._heartbeat_loop(endpoint, endpoint.rules.heartbeat_interval_s)
                self._spawn(beat, f"sim-heartbeat-{venue}")
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
        """Return the `ws_url` a client configures for the venue (Binance: the base; others: their path)."""
        endpoint = self._endpoint(venue)
        return f"ws://{self._address(venue)}{endpoint.protocol.url_path}"

    def rest_url(self, venue: str) -> str:
        """Return the `rest_url` a client configures for a venue with REST snapshots (Binance, OKX)."""
        if not self._endpoint(venue).protocol.has_rest:
            raise SimulatorError(f"{venue} serves no REST API in the simulator")
        return f"http://{self._address(venue)}"

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
        endpoint = self._symbol_endpoint(venue, symbol)
        top = BookTop(
            bid=decimal_arg("bid", bid),
            bid_qty=decimal_arg("bid_qty", bid_qty),
            ask=decimal_arg("ask", ask),
            ask_qty=decimal_arg("ask_qty", ask_qty),
        )
        endpoint.publish(symbol, top)
        await asyncio.sleep(0)  # let writers run, so a tight push loop does not overflow outboxes

    def depth(self, venue: str, symbol: str) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """Return the venue's current book of the symbol as (bids, asks), best first."""
        book = self._symbol_endpoint(venue, symbol).books.depth(symbol).snapshot()
        return book.bids, book.asks

    async def advance(self, ticks: int = 1) -> None:
        """Step the price model `ticks` times by hand and publish what changed, as autoplay does."""
        for _ in range(ticks):
            self._step_model()
            await asyncio.sleep(0)

    async def flush(self, venue: str) -> None:
        """Wait until every connection of the venue has written out what was queued for it."""
        await self._endpoint(venue).flush()

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
        """Return once `count` market-data subscriptions (BBO or depth) to the symbol were received.

        Counted cumulatively across connections; a request naming the symbol twice counts twice.

        Raises `SubscriptionTimeout` (a `SimulatorError` and a `TimeoutError`) when they do not come in time.
        """
        await self._symbol_endpoint(venue, symbol).wait_subscribed(symbol, count, timeout)

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
        self.model.step()
        for venue, endpoint in self._endpoints.items():
            if endpoint.stalled:
                continue  # a stalled venue's market stands still, so the stall itself loses nothing
            for symbol in endpoint.symbols:
                # The model's quote wins at each tick: a scripted or crossed top lasts one tick.
                top = self.model.quote(venue, symbol)
                served = endpoint.books.bbo.get(symbol)
                endpoint.publish(symbol, None if served and served.top == top else top, evolve=True)

    async def _autoplay_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_interval_s)
            self._step_model()

    @staticmethod
    async def _repush_loop(endpoint: VenueEndpoint, interval_s: float) -> None:
        # A timer, not a wait for a condition: each pass says how long until the next book is due.
        while True:  # noqa: ASYNC110
            await asyncio.sleep(endpoint.repush(interval_s))

    @staticmethod
    async def _heartbeat_loop(endpoint: VenueEndpoint, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            endpoint.heartbeat()

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

    def _address(self, venue: str) -> str:
        endpoint = self._endpoint(venue)
        if endpoint.port == 0:
            raise SimulatorError(f"{venue} has no port yet: start the simulator first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{endpoint.port}"
