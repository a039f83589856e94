"""Prometheus metrics of the decision layer, served by the daemon.

The cache keeps plain integer counters on its hot path; `CacheCollector`
reads them at scrape time, so a cache lookup never touches a metric lock.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router.cache import PriceCache

OPPORTUNITY_EVENTS = ("opened", "updated", "closed")

OPPORTUNITIES = Counter(
    "smartroute_opportunities_total",
    "Arbitrage opportunity events published, by lifecycle event.",
    ["event"],
)
DETECTOR_LATENCY = Histogram(
    "smartroute_detector_latency_seconds",
    "From a quote's arrival (frame received) to the opportunity event it caused.",
    buckets=(0.00001, 0.000025, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25),
)


def init_detector_metrics() -> None:
    """Create every labelled detector series at zero, so they exist from start."""
    for event in OPPORTUNITY_EVENTS:
        OPPORTUNITIES.labels(event=event)


class CacheCollector(Collector):
    """Expose a PriceCache's statistics as Prometheus metrics at scrape time."""

    def __init__(self, cache: PriceCache) -> None:
        self.cache = cache

    def collect(self) -> Iterable[Metric]:
        """Yield hits, misses, expirations (counters) and entries (gauge)."""
        stats = self.cache.stats()
        yield CounterMetricFamily("smartroute_cache_hits", "Cache reads that found a live entry.", stats.hits)
        yield CounterMetricFamily(
            "smartroute_cache_misses", "Cache reads that found nothing live.", stats.misses
        )
        yield CounterMetricFamily(
            "smartroute_cache_expirations", "Entries dropped for being past their TTL.", stats.expirations
        )
        yield GaugeMetricFamily("smartroute_cache_entries", "Entries held now.", stats.entries)


def register_cache_metrics(cache: PriceCache, registry: CollectorRegistry = REGISTRY) -> CacheCollector:
    """Register a collector for `cache`; return it so the caller can unregister it."""
    collector = CacheCollector(cache)
    registry.register(collector)
    return collector
