"""`smartroute run`: feeds → cache → detector and router → Kafka, in one process under one TaskGroup.

Roles: `feeds` (exchange connections into the cache), `detect` (publish
opportunities), `route` (serve order requests), and for scale-out
`publish_quotes` (feeds also write every quote to `smartroute.quotes`) and
`consume_quotes` (the cache is filled from that topic instead of exchanges).
`smartroute run` = feeds + detect + route; `feeds` = feeds + publish_quotes;
`detect` = consume_quotes + detect; `route` = feeds + route.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import structlog
from prometheus_client.registry import Collector

from connectors.registry import build_adapter
from connectors.stream import StreamRunner
from connectors.types import QUOTE_MESSAGE_MAX_LEVELS, Quote, Withdrawal
from daemon.config import Config, DetectorConfig, VenueConfig
from daemon.errors import ConfigError
from daemon.health import BrokerWatch, RouterState, VenueHealth, assess, venue_health
from daemon.http import HttpServer
from daemon.kafka import KafkaMetadataProbe, Publisher, init_publisher_metrics
from daemon.kafka.topics import require_topics
from daemon.metrics import register_process_metrics, unregister
from daemon.opportunities import FollowedOpportunities
from daemon.quotes import QuoteFollower
from daemon.router_service import RouterService
from daemon.routing import RouterParts, RouterSections, build_router
from daemon.status import status_view
from daemon.systemd import Notifier
from router.cache import PriceCache
from router.detector import ArbitrageDetector, Opportunity
from router.metrics import (
    observe_freshness,
)
from router.opportunities import DetectorOpportunities, OpenOpportunities

log = structlog.get_logger(__name__)

_PURGE_INTERVAL_S = 5.0
_SAMPLE_INTERVAL_S = 1.0
# A feed's first connection attempt ends within the connector's open timeout (10 s); this bounds
# the wait for it before READY=1, so one hung venue never holds up the start.
_STARTUP_WAIT_S = 15.0
_STARTUP_POLL_S = 0.02
ALL_ROLES = frozenset({"feeds", "detect", "route"})


class Daemon:
    """Own every long-running part of one smartroute process and run them until told to stop."""

    def __init__(self, cfg: Config, *, roles: frozenset[str] = ALL_ROLES, freeze_heap: bool = False) -> None:
        self.cfg = cfg
        # The process is this daemon's (the CLI's): once started, what startup built is frozen out of the
        # garbage collector's full passes, which otherwise stall the loop for tens of ms (`settle_heap`).
        self._freeze_heap = freeze_heap
        self.cache = PriceCache(ttl_ms=cfg.cache.ttl_ms, max_quote_age_ms=cfg.cache.max_quote_age_ms)
        self.publisher = Publisher(cfg.kafka)
        self.opportunity_topic = cfg.topic("opportunities")
        venues = cfg.enabled_venues()
        self.detector: ArbitrageDetector | None = None
        if cfg.detector.enabled and "detect" in roles:
            self.detector = new_detector(cfg.detector, venues, self.cache, self._publish_opportunity)
        self.quotes_topic = cfg.topic("quotes") if "publish_quotes" in roles else None
        if self.quotes_topic is not None:
            _check_quote_depths(venues)
        # Stamps the withdrawals published to the quotes topic (injected by tests and replays).
        self.wall_clock_ns: Callable[[], int] = time.time_ns
        self.quote_follower = (
            QuoteFollower(
                cfg.kafka,
                cfg.router.session_timeout_ms,
                self._on_quote_from_kafka,
                self.publisher,
                on_withdrawal=self._on_withdrawal_from_kafka,
            )
            if "consume_quotes" in roles
            else None
        )
        self.runners = feed_runners(
            venues if "feeds" in roles else {},
            self._on_quote,
            on_book_invalid=self._on_book_invalid,
            on_disconnect=self._on_disconnect,
        )
        self.router: RouterParts | None = None
        self.router_service: RouterService | None = None
        if cfg.router.enabled and "route" in roles:
            # An arbitrage's opportunity_id is checked against this process's detector, or else
            # against the opportunities topic, which the router service then follows.
            opportunities: OpenOpportunities
            followed: FollowedOpportunities | None = None
            if self.detector is not None:
                opportunities = DetectorOpportunities(self.detector)
            else:
                opportunities = followed = FollowedOpportunities()
            self.router = build_router(RouterSections.of(cfg), self.cache, opportunities=opportunities)
            self.router_service = RouterService(
                cfg.kafka,
                cfg.router,
                self.router.router,
                self.router.preferences,
                self.router.kill_switch,
                self.publisher,
                guard=self.router.guard,
                opportunities=followed,
                open_orders=self.router.open_orders,
                pruner=self.router.pruner,
            )
        self.http: HttpServer | None = None
        self.started = asyncio.Event()
        # systemd notifications and readiness inputs (daemon/systemd.py, daemon/health.py)
        self.notifier = Notifier.from_environ()
        self.broker_watch = BrokerWatch(KafkaMetadataProbe(cfg.kafka))

    def _on_quote(self, quote: Quote) -> None:
        self.cache.update(quote)
        if self.detector is not None:
            self.detector.on_quote(quote)
        if self.quotes_topic is not None:
            self.publisher.publish(self.quotes_topic, quote.symbol.encode(), orjson.dumps(quote.as_message()))

    def _on_book_invalid(self, venue: str, symbol: str, reason: str) -> None:
        """Withdraw a book that can no longer be trusted, and close what was built on it, at once."""
        self.cache.invalidate(venue, symbol)
        if self.detector is not None:
            self.detector.evaluate(symbol)
        self._publish_withdrawal(venue, symbol, reason)
        log.warning("book_withdrawn", venue=venue, symbol=symbol, reason=reason)

    def _on_disconnect(self, venue: str, symbols: Sequence[str]) -> None:
        """Withdraw a venue's books as soon as its connection ends: a dead feed's price is never served."""
        withdrawn = [symbol for symbol in symbols if self.cache.invalidate(venue, symbol)]
        for symbol in withdrawn:
            if self.detector is not None:
                self.detector.evaluate(symbol)
            self._publish_withdrawal(venue, symbol, "disconnected")
        if withdrawn:
            log.info("venue_books_withdrawn", venue=venue, symbols=len(withdrawn), reason="disconnected")

    def _publish_withdrawal(self, venue: str, symbol: str, reason: str) -> None:
        """Tell the detectors of other processes, in order with the symbol's quotes, that a book is gone."""
        if self.quotes_topic is not None:
            withdrawal = Withdrawal(venue, symbol, reason, self.wall_clock_ns())
            self.publisher.publish(self.quotes_topic, symbol.encode(), orjson.dumps(withdrawal.as_message()))

    def _on_quote_from_kafka(self, quote: Quote, age_ns: int) -> None:
        self.cache.update(quote, age_ns=age_ns)
        if self.detector is not None:
            self.detector.on_quote(quote)

    def _on_withdrawal_from_kafka(self, withdrawal: Withdrawal) -> None:
        """Withdraw a book the feeds withdrew, exactly as `_on_book_invalid` does in their process."""
        self.cache.invalidate(withdrawal.venue, withdrawal.symbol)
        if self.detector is not None:
            self.detector.evaluate(withdrawal.symbol)

    def _publish_opportunity(self, opportunity: Opportunity) -> None:
        self.publisher.publish(
            self.opportunity_topic, opportunity.symbol.encode(), orjson.dumps(opportunity.as_message())
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down in order: intake, in-flight work, producer, sockets.

        A fatal error in any part cancels the others and propagates, so the
        process exits non-zero and its supervisor restarts it.
        """
        collectors = self._init_metrics()
        try:
            await self.publisher.start()
            await require_topics(self.cfg.kafka, self._topics_used())
            if self.router is not None:
                await self.router.connect()  # live venues: clock offset and rules before reconciling
            await self._start_http()
            async with asyncio.TaskGroup() as tg:
                workers = [tg.create_task(r.run(), name=f"feed:{venue}") for venue, r in self.runners.items()]
                workers.append(tg.create_task(self._housekeeping(), name="housekeeping"))
                workers.append(tg.create_task(self.notifier.watchdog_loop(), name="systemd-watchdog"))
                workers.append(tg.create_task(self.broker_watch.run(), name="kafka-probe"))
                tg.create_task(self.publisher.run(), name="kafka-publisher")
                if self.quote_follower is not None:
                    workers.append(tg.create_task(self.quote_follower.run(stop), name="quotes"))
                if self.router is not None and self.router.balance_sync is not None:
                    workers.append(tg.create_task(self.router.balance_sync.run(), name="balances"))
                routing = None
                if self.router_service is not None:
                    routing = tg.create_task(self.router_service.run(stop), name="router")
                await self._await_startup(stop)
                self.started.set()
                if self._freeze_heap:
                    settle_heap()
                self.notifier.ready(f"running: {len(self.runners)} venues, {self.cfg.daemon.mode} mode")
                log.info("daemon_started", venues=sorted(self.runners), mode=self.cfg.daemon.mode)
                await stop.wait()
                self.notifier.stopping("stopping: finishing in-flight work, flushing Kafka")
                log.info("daemon_stopping")
                if routing is not None:
                    # Stop intake first: the router finishes its batch, publishes, commits, then returns.
                    await asyncio.wait({routing}, timeout=self.cfg.daemon.shutdown_timeout_ms / 1000)
                for task in workers:
                    task.cancel()
                await self.publisher.close(self.cfg.daemon.shutdown_timeout_ms / 1000)
        finally:
            await self.publisher.close(self.cfg.daemon.shutdown_timeout_ms / 1000)
            if self.http is not None:
                await self.http.close()
            unregister(collectors)
            self.notifier.close()
            if self.router is not None:
                await self.router.disconnect()
                self.router.ledger.close()
        log.info("daemon_stopped")

    def _topics_used(self) -> list[str]:
        """Return the topics this process reads or writes: each must exist before it starts."""
        used = {"dlq"} if self.quote_follower is not None or self.router_service is not None else set()
        if self.detector is not None:
            used.add("opportunities")
        if self.quote_follower is not None or self.quotes_topic is not None:
            used.add("quotes")
        if self.router_service is not None:
            used |= {"orders", "results", "control", "preferences"}
        return [self.cfg.topic(name) for name in sorted(used)]

    def _init_metrics(self) -> list[Collector]:
        init_publisher_metrics([self.opportunity_topic, *([self.quotes_topic] if self.quotes_topic else [])])
        if self.router is None:
            return register_process_metrics(self.cache, list(self.runners))
        return register_process_metrics(
            self.cache,
            list(self.runners),
            positions=self.router.router.risk.positions,
            loss=self.router.loss,
            balances=self.router.router.balances,
            tradable=self.router.symbols,
        )

    async def _start_http(self) -> None:
        if self.cfg.daemon.http_port == 0:
            return
        self.http = HttpServer(
            self.cfg.daemon.http_host,
            self.cfg.daemon.http_port,
            status=self.status,
            readiness=self.readiness,
        )
        await self.http.start()

    async def _housekeeping(self) -> None:
        """Close opportunities whose quotes went stale, and drop expired cache entries."""
        interval = self.cfg.detector.sweep_interval_ms / 1000
        next_purge = time.monotonic() + _PURGE_INTERVAL_S
        next_sample = time.monotonic()
        symbols = {venue: vc.symbols for venue, vc in self.cfg.enabled_venues().items()}
        while True:
            await asyncio.sleep(interval)
            if self.detector is not None:
                self.detector.sweep()
            if time.monotonic() >= next_sample:
                observe_freshness(self.cache, symbols)
                next_sample = time.monotonic() + _SAMPLE_INTERVAL_S
            if time.monotonic() >= next_purge:
                self.cache.purge_expired()
                next_purge = time.monotonic() + _PURGE_INTERVAL_S

    async def _await_startup(self, stop: asyncio.Event) -> None:
        """Wait until each feed made its first connection attempt (bounded) and the router reconciled."""
        deadline = time.monotonic() + _STARTUP_WAIT_S
        pending: list[str] = []
        while not stop.is_set():
            if time.monotonic() < deadline:
                pending = sorted(v for v, r in self.runners.items() if r.state in ("idle", "connecting"))
            elif pending:
                log.warning("startup_feeds_pending", venues=pending, waited_s=_STARTUP_WAIT_S)
                pending = []
            if not pending and self._router_state() != "reconciling":
                return
            await asyncio.sleep(_STARTUP_POLL_S)  # StreamRunner offers no event to wait on

    def _router_state(self) -> RouterState:
        if self.router_service is None:
            return "not_running"
        return "reconciled" if self.router_service.reconciled.is_set() else "reconciling"

    def _venue_health(self) -> dict[str, VenueHealth]:
        return venue_health(
            {venue: r.state for venue, r in self.runners.items()},
            self.cache.entries(),
            now_ns=self.cache.clock_ns(),
            max_quote_age_ms=self.cfg.cache.max_quote_age_ms,
        )

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Answer /readyz by the rule in `daemon.health`: Kafka, router reconciliation, fresh venues."""
        verdict = assess(
            started=self.started.is_set(),
            broker=self.broker_watch.health,
            venues=self._venue_health(),
            router=self._router_state(),
            now_s=self.broker_watch.clock(),
        )
        return verdict.as_response()

    def status(self) -> dict[str, Any]:
        """Return the JSON status view (`daemon.status`)."""
        return status_view(
            mode=self.cfg.daemon.mode,
            max_quote_age_ms=self.cfg.cache.max_quote_age_ms,
            readiness=self.readiness(),
            health=self._venue_health(),
            cache=self.cache,
            runners=self.runners,
            detector=self.detector,
            router=self.router,
        )


def new_detector(
    settings: DetectorConfig,
    venues: Mapping[str, VenueConfig],
    cache: PriceCache,
    publish: Callable[[Opportunity], None],
) -> ArbitrageDetector:
    """Build the arbitrage detector of `[detector]` over `cache`, with the enabled venues' taker fees."""
    return ArbitrageDetector(
        cache,
        {venue: vc.taker_fee_bps for venue, vc in venues.items()},
        publish,
        min_net_profit_bps=settings.min_net_profit_bps,
        max_notional=settings.max_notional,
        update_min_change_bps=settings.update_min_change_bps,
    )


def feed_runners(
    venues: Mapping[str, VenueConfig],
    on_quote: Callable[[Quote], None],
    *,
    on_book_invalid: Callable[[str, str, str], None],
    on_disconnect: Callable[[str, Sequence[str]], None],
) -> dict[str, StreamRunner]:
    """Build one connection runner per venue of `venues` (the enabled `[venues.<id>]` sections)."""
    return {
        venue: StreamRunner(
            build_adapter(venue, vc.symbols, ws_url=vc.ws_url, rest_url=vc.rest_url, depth=vc.depth),
            on_quote,
            silence_timeout_s=vc.silence_timeout_ms / 1000,
            on_book_invalid=on_book_invalid,
            on_disconnect=on_disconnect,
        )
        for venue, vc in venues.items()
    }


def _check_quote_depths(venues: Mapping[str, VenueConfig]) -> None:
    """Refuse to publish quotes deeper than a quote message carries: a detector would size on less."""
    for venue, vc in venues.items():
        if vc.depth is not None and vc.depth > QUOTE_MESSAGE_MAX_LEVELS:
            raise ConfigError(
                f"venues.{venue}.depth = {vc.depth}: scale-out quote messages carry at most "
                f"{QUOTE_MESSAGE_MAX_LEVELS} levels a side; lower it to publish quotes"
            )


def settle_heap() -> None:
    """Collect, then freeze every object alive now out of later garbage collections (`gc.freeze`).

    What a started daemon holds (modules, clients, caches, the router's state) lives as long as the
    process; without this, every full collection walks all of it: passes of 30-40 ms, on the event
    loop, a few times a minute under load. Collected first, so no garbage is frozen with it.
    """
    gc.collect()
    gc.freeze()
