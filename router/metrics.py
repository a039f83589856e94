"""Prometheus metrics of the decision layer, served by the daemon.

The cache keeps plain integer counters on its hot path; `CacheCollector`
reads them at scrape time, so a cache lookup never touches a metric lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router.balances import BalanceBook
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


ORDER_REQUESTS = Counter(
    "smartroute_order_requests_total",
    "Order requests answered, by result status (or 'replayed' for a stored result) and reject code.",
    ["status", "reject_code"],
)
ORDER_LEG_SECONDS = Histogram(
    "smartroute_order_leg_seconds",
    "Time to execute one order leg on a venue, from send to settled outcome.",
    ["venue"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BOOK_AGE = Histogram(
    "smartroute_book_age_seconds",
    "Age of each configured symbol's cached book or quote, sampled once a second.",
    ["venue"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0),
)
STALE_SYMBOLS = Gauge(
    "smartroute_stale_symbols",
    "Configured symbols of a venue with no quote younger than max_quote_age_ms (not used for decisions).",
    ["venue"],
)


def observe_freshness(cache: PriceCache, symbols_by_venue: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Sample every configured symbol's age into the metrics; return the stale count per venue."""
    now = cache.clock_ns()
    latest = {(e.quote.venue, e.quote.symbol): e for e in cache.entries()}
    stale_by_venue = {}
    for venue, symbols in symbols_by_venue.items():
        stale = 0
        for symbol in symbols:
            entry = latest.get((venue, symbol))
            if entry is None:
                stale += 1
                continue
            age_ns = entry.age_ns(now)
            BOOK_AGE.labels(venue=venue).observe(age_ns / 1e9)
            stale += age_ns > cache.max_quote_age_ns
        STALE_SYMBOLS.labels(venue=venue).set(stale)
        stale_by_venue[venue] = stale
    return stale_by_venue


BALANCE_DRIFT = Counter(
    "smartroute_balance_drift_total",
    "Live balance reads where the venue's free balance of an asset differed from the expected one "
    "by more than [router] balance_tolerance_bps (the venue's figure is then adopted).",
    ["venue", "asset"],
)
BALANCE_READS = Counter(
    "smartroute_balance_reads_total",
    "Live balance reads by outcome: read, failed (the venue did not answer), skipped (a leg was in flight).",
    ["venue", "outcome"],
)
BALANCE_READ_OUTCOMES = ("read", "failed", "skipped")

UNKNOWN_VENUE_ORDERS = Gauge(
    "smartroute_unknown_venue_orders",
    "Orders open at a live venue that the ledger does not know as a leg in flight (placed by hand, by "
    "another system, or settled in the ledger yet still open), at the latest check; never cancelled.",
    ["venue"],
)
OPEN_ORDER_CHECK_FAILURES = Counter(
    "smartroute_open_orders_check_failures_total",
    "Checks of a live venue's open orders against the ledger that failed (the venue could not list them).",
    ["venue"],
)
HALTED = Gauge("smartroute_halted", "1 while the kill switch stops new executions, else 0.")
LOSS_HALTS = Counter(
    "smartroute_loss_halts",
    "Automatic halts because the UTC day's realized PnL fell below -[risk] max_daily_loss.",
)
ORDER_STATUSES = ("filled", "partially_filled", "rejected", "failed", "replayed")


def init_router_metrics(venues: Iterable[str]) -> None:
    """Create the router's series at zero so they exist from start (reject codes appear when used)."""
    for status in ORDER_STATUSES:
        ORDER_REQUESTS.labels(status=status, reject_code="")
    for outcome in SETTLE_OUTCOMES:
        SETTLE_ATTEMPTS.labels(outcome=outcome)
    for venue in venues:
        ORDER_LEG_SECONDS.labels(venue=venue)
        UNKNOWN_VENUE_ORDERS.labels(venue=venue)
        OPEN_ORDER_CHECK_FAILURES.labels(venue=venue)
        RESIDUAL_ATTEMPTS.labels(venue=venue)


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
        yield CounterMetricFamily(
            "smartroute_cache_invalidations",
            "Entries withdrawn because their book could no longer be trusted (gap, checksum, crossed).",
            stats.invalidations,
        )
        yield CounterMetricFamily(
            "smartroute_cache_refused_quotes",
            "Quotes the cache refused because they cannot be true (crossed, a price not positive).",
            stats.refused,
        )
        yield from self._feed_lags()

    def _feed_lags(self) -> Iterable[Metric]:
        lag = GaugeMetricFamily(
            "smartroute_feed_lag_seconds",
            "How far behind its recent best the venue's stream was at its last stamped quote "
            "(received - exchange time, less the window's minimum); added to that quote's age.",
            labels=["venue"],
        )
        baseline = GaugeMetricFamily(
            "smartroute_feed_clock_offset_seconds",
            "The venue's lowest received - exchange time over the lag window: one-way latency plus "
            "the venue's clock offset (negative when its clock is ahead of ours).",
            labels=["venue"],
        )
        for venue, feed in sorted(self.cache.feed_lags().items()):
            lag.add_metric([venue], feed.behind_ns / 1e9)
            baseline.add_metric([venue], (feed.baseline_ns or 0) / 1e9)
        yield from (lag, baseline)


class BalanceCollector(Collector):
    """Expose a BalanceBook's holdings as `smartroute_balance{venue,asset,state}` at scrape time."""

    def __init__(self, book: BalanceBook) -> None:
        self.book = book

    def collect(self) -> Iterable[Metric]:
        """Yield each tracked venue's assets: available and reserved (in the asset's own units)."""
        family = GaugeMetricFamily(
            "smartroute_balance",
            "What the router holds of an asset on a venue: available to new legs, or reserved by legs "
            "in flight.",
            labels=["venue", "asset", "state"],
        )
        for venue, assets in self.book.snapshot().items():
            for asset, holding in assets.items():
                family.add_metric([venue, asset, "available"], float(holding.available))
                family.add_metric([venue, asset, "reserved"], float(holding.reserved))
        yield family


def register_balance_metrics(book: BalanceBook, registry: CollectorRegistry = REGISTRY) -> BalanceCollector:
    """Register a collector for `book`; return it so the caller can unregister it."""
    collector = BalanceCollector(book)
    registry.register(collector)
    return collector


def register_cache_metrics(cache: PriceCache, registry: CollectorRegistry = REGISTRY) -> CacheCollector:
    """Register a collector for `cache`; return it so the caller can unregister it."""
    collector = CacheCollector(cache)
    registry.register(collector)
    return collector


RESIDUAL_OPEN = Gauge(
    "smartroute_residual_open",
    "Arbitrage residuals (unhedged quantities) the router is still working to flatten.",
)
RESIDUAL_ATTEMPTS = Counter(
    "smartroute_residual_attempts_total",
    "IOC legs sent to flatten an arbitrage's residual, by venue.",
    ["venue"],
)
RESIDUAL_HALTS = Counter(
    "smartroute_residual_halts_total",
    "Residuals not flat within residual_timeout_ms: each one halted trading.",
)
REQUESTS_UNSETTLED = Gauge(
    "smartroute_requests_unsettled",
    "Requests in flight whose execution or settlement failed: the background settler retries them "
    "and owes their results.",
)
SETTLE_ATTEMPTS = Counter(
    "smartroute_settle_attempts_total",
    "Background settler attempts, by outcome: settled (result published), failed (still unknown), "
    "unpublished (settled, its result not acknowledged yet).",
    ["outcome"],
)
SETTLE_OUTCOMES = ("settled", "failed", "unpublished")
LEDGER_PRUNED = Counter(
    "smartroute_ledger_pruned_requests_total",
    "Answered requests deleted from the ledger by [router] ledger_retention_ms, fills carried forward.",
)
LEASES_TAKEN_OVER = Counter(
    "smartroute_ledger_leases_taken_over_total",
    "Requests this router took over from another whose lease on them expired (shared ledger only).",
)
LEASE_RENEWAL_FAILURES = Counter(
    "smartroute_ledger_lease_renewal_failures_total",
    "Renewals of this router's leases that failed (shared ledger unreachable): past a lease, "
    "other routers take its requests over.",
)
LEASES_LOST = Counter(
    "smartroute_ledger_leases_lost_total",
    "Requests this router stopped acting on because another router took its claim over.",
)
