"""`smartroute run`: feeds → cache → detector → Kafka, in one process under one TaskGroup."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import structlog
from prometheus_client import REGISTRY

from connectors.metrics import init_venue_metrics
from connectors.registry import build_adapter
from connectors.stream import StreamRunner
from connectors.types import Quote
from daemon.config import Config
from daemon.http import HttpServer
from daemon.kafka import Publisher, init_publisher_metrics
from router.cache import PriceCache
from router.detector import ArbitrageDetector, Opportunity
from router.metrics import CacheCollector, init_detector_metrics, register_cache_metrics

log = structlog.get_logger(__name__)

_PURGE_INTERVAL_S = 5.0


class Daemon:
    """Own every long-running part of one smartroute process and run them until told to stop."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.cache = PriceCache(ttl_ms=cfg.cache.ttl_ms, max_quote_age_ms=cfg.cache.max_quote_age_ms)
        self.publisher = Publisher(cfg.kafka)
        self.opportunity_topic = cfg.topic("opportunities")
        venues = cfg.enabled_venues()
        self.detector: ArbitrageDetector | None = None
        if cfg.detector.enabled:
            self.detector = ArbitrageDetector(
                self.cache,
                {venue: vc.taker_fee_bps for venue, vc in venues.items()},
                self._publish_opportunity,
                min_net_profit_bps=cfg.detector.min_net_profit_bps,
                max_notional=cfg.detector.max_notional,
                update_min_change_bps=cfg.detector.update_min_change_bps,
            )
        self.runners = {
            venue: StreamRunner(
                build_adapter(venue, vc.symbols, ws_url=vc.ws_url),
                self._on_quote,
                silence_timeout_s=vc.silence_timeout_ms / 1000,
            )
            for venue, vc in venues.items()
        }
        self.http: HttpServer | None = None
        self.started = asyncio.Event()

    def _on_quote(self, quote: Quote) -> None:
        self.cache.update(quote)
        if self.detector is not None:
            self.detector.on_quote(quote)

    def _publish_opportunity(self, opportunity: Opportunity) -> None:
        self.publisher.publish(
            self.opportunity_topic, opportunity.symbol.encode(), orjson.dumps(opportunity.as_message())
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down in order: intake, in-flight work, producer, sockets.

        A fatal error in any part cancels the others and propagates, so the
        process exits non-zero and its supervisor restarts it.
        """
        cache_collector = self._init_metrics()
        try:
            await self.publisher.start()
            await self._start_http()
            async with asyncio.TaskGroup() as tg:
                workers = [tg.create_task(r.run(), name=f"feed:{venue}") for venue, r in self.runners.items()]
                workers.append(tg.create_task(self._housekeeping(), name="housekeeping"))
                tg.create_task(self.publisher.run(), name="kafka-publisher")
                self.started.set()
                log.info("daemon_started", venues=sorted(self.runners), mode=self.cfg.daemon.mode)
                await stop.wait()
                log.info("daemon_stopping")
                for task in workers:
                    task.cancel()
                await self.publisher.close(self.cfg.daemon.shutdown_timeout_ms / 1000)
        finally:
            await self.publisher.close(self.cfg.daemon.shutdown_timeout_ms / 1000)
            if self.http is not None:
                await self.http.close()
            REGISTRY.unregister(cache_collector)
        log.info("daemon_stopped")

    def _init_metrics(self) -> CacheCollector:
        for venue in self.runners:
            init_venue_metrics(venue)
        init_detector_metrics()
        init_publisher_metrics([self.opportunity_topic])
        return register_cache_metrics(self.cache)

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
        while True:
            await asyncio.sleep(interval)
            if self.detector is not None:
                self.detector.sweep()
            if time.monotonic() >= next_purge:
                self.cache.purge_expired()
                next_purge = time.monotonic() + _PURGE_INTERVAL_S

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when started and every venue streams; otherwise say which are not."""
        not_streaming = sorted(v for v, r in self.runners.items() if r.state != "streaming")
        ready = self.started.is_set() and not not_streaming
        return ready, {"venues_not_streaming": not_streaming}

    def status(self) -> dict[str, Any]:
        """Return the JSON status view: venues, connection state, quote ages, cache statistics."""
        now = self.cache.clock_ns()
        ages: dict[str, dict[str, float]] = {}
        for entry in self.cache.entries():
            q = entry.quote
            ages.setdefault(q.venue, {})[q.symbol] = round(entry.age_ns(now) / 1e6, 3)
        stats = self.cache.stats()
        return {
            "mode": self.cfg.daemon.mode,
            "venues": {
                venue: {"state": r.state, "connects": r.connects, "quote_age_ms": ages.get(venue, {})}
                for venue, r in self.runners.items()
            },
            "cache": {
                "hits": stats.hits,
                "misses": stats.misses,
                "expirations": stats.expirations,
                "entries": stats.entries,
            },
            "open_opportunities": len(self.detector.open_opportunities()) if self.detector else 0,
        }
