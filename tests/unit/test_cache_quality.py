"""PriceCache: a quote that cannot be true is never served, and age reads the exchange's clock too.

A venue that stamps its messages is judged by how far its stream runs behind its own
recent best (exchange time against arrival, net of a constant clock offset), and by
arrival time; whichever says older. Every clock here is injected: nothing sleeps.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from connectors.types import Quote
from router.cache import FeedLag, PriceCache
from router.metrics import register_cache_metrics

MS = 1_000_000
SECOND = 1_000 * MS
WALL0 = 1_764_000_000 * SECOND  # the feed's wall clock: received_ns
EXCHANGE_AHEAD = 7 * SECOND  # the venue's clock runs 7 s ahead of ours


class Clocks:
    """The cache's monotonic clock and the wall clock a feed stamps `received_ns` with, moving together."""

    def __init__(self) -> None:
        self.monotonic_ns = 5_000 * MS
        self.wall_ns = WALL0

    def __call__(self) -> int:
        return self.monotonic_ns

    def advance_ms(self, ms: float) -> None:
        self.monotonic_ns += int(ms * MS)
        self.wall_ns += int(ms * MS)


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def cache(clocks: Clocks) -> PriceCache:
    return PriceCache(ttl_ms=30_000, max_quote_age_ms=1_500, clock_ns=clocks)


def quote(
    venue: str, bid: str, ask: str, *, exchange_ns: int | None = None, received_ns: int = 0, qty: str = "1"
) -> Quote:
    return Quote(
        venue,
        "BTC-USDT",
        Decimal(bid),
        Decimal(qty),
        Decimal(ask),
        Decimal(qty),
        exchange_ns,
        received_ns,
        None,
    )


def stamped(clocks: Clocks, latency_ms: float, bid: str = "100", venue: str = "okx") -> Quote:
    """A quote the venue (clock `EXCHANGE_AHEAD` fast) sent `latency_ms` before it arrives now."""
    sent = clocks.wall_ns - int(latency_ms * MS) + EXCHANGE_AHEAD
    return quote(venue, bid, "101", exchange_ns=sent, received_ns=clocks.wall_ns)


# --- quotes that cannot be true ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bid", "ask", "qty"),
    [
        ("101", "100", "1"),  # crossed
        ("100", "100", "1"),  # locked: bid at the ask
        ("0", "1", "1"),  # a bid that is no price
        ("-1", "1", "1"),
        ("-2", "-1", "1"),
    ],
)
def test_a_quote_that_cannot_be_true_is_refused_and_withdraws_the_venues_entry(
    cache: PriceCache, bid: str, ask: str, qty: str
) -> None:
    assert cache.update(quote("binance", "99", "100")) is not None

    assert cache.update(quote("binance", bid, ask, qty=qty)) is None

    assert cache.get("binance", "BTC-USDT") is None
    assert cache.fresh("BTC-USDT") == {}
    assert cache.get_best_price("BTC-USDT", "sell") is None
    stats = cache.stats()
    assert (stats.refused, stats.invalidations, stats.entries) == (1, 1, 0)
    assert cache.update(quote("binance", "99", "100")) is not None  # a true quote serves again


def test_refused_quotes_are_exported(cache: PriceCache) -> None:
    registry = CollectorRegistry()
    register_cache_metrics(cache, registry)
    cache.update(quote("binance", "101", "100"))

    assert registry.get_sample_value("smartroute_cache_refused_quotes_total") == 1


# --- age by the exchange's time ------------------------------------------------------------------


def test_a_constant_clock_offset_does_not_make_quotes_stale(cache: PriceCache, clocks: Clocks) -> None:
    for _ in range(20):
        cache.update(stamped(clocks, latency_ms=20))
        clocks.advance_ms(500)
        assert cache.fresh("BTC-USDT").keys() == {"okx"}
    lag = cache.feed_lags()["okx"]
    assert lag.behind_ns == 0
    assert lag.baseline_ns == 20 * MS - EXCHANGE_AHEAD  # latency + offset: negative, the venue is ahead


def test_a_quote_stamped_long_before_the_streams_recent_best_counts_as_old(
    cache: PriceCache, clocks: Clocks
) -> None:
    cache.update(stamped(clocks, latency_ms=10, venue="bybit"))
    cache.update(stamped(clocks, latency_ms=10))
    clocks.advance_ms(100)

    entry = cache.update(stamped(clocks, latency_ms=3_010))  # a backlog: sent 3 s earlier than usual

    assert entry is not None and entry.age_ns(clocks()) == 3_000 * MS
    assert cache.fresh("BTC-USDT").keys() == {"bybit"}
    assert cache.get_best_price("BTC-USDT", "sell") is not None
    assert cache.get_best_price("BTC-USDT", "sell").venue == "bybit"  # type: ignore[union-attr]


def test_age_is_the_older_of_arrival_and_exchange_time(cache: PriceCache, clocks: Clocks) -> None:
    cache.update(stamped(clocks, latency_ms=5))
    clocks.advance_ms(50)
    cache.update(stamped(clocks, latency_ms=1_005))  # arrives 1 s behind the stream's best
    clocks.advance_ms(400)
    assert cache.fresh("BTC-USDT").keys() == {"okx"}  # 1.4 s old by the exchange's time

    clocks.advance_ms(200)  # 0.6 s since arrival, 1.6 s since the exchange sent it
    assert cache.fresh("BTC-USDT") == {}


def test_quotes_without_an_exchange_time_are_aged_by_arrival(cache: PriceCache, clocks: Clocks) -> None:
    cache.update(stamped(clocks, latency_ms=5))
    entry = cache.update(quote("binance", "100", "101", received_ns=clocks.wall_ns))
    clocks.advance_ms(1_000)

    assert entry is not None and entry.age_ns(clocks()) == 1_000 * MS
    assert "binance" not in cache.feed_lags()


def test_transit_age_and_exchange_lag_add_up(cache: PriceCache, clocks: Clocks) -> None:
    cache.update(stamped(clocks, latency_ms=5))
    entry = cache.update(stamped(clocks, latency_ms=305), age_ns=200 * MS)

    assert entry is not None and entry.age_ns(clocks()) == 500 * MS


def test_the_baseline_survives_a_silent_spell_so_a_backlog_after_a_reconnect_is_old(
    cache: PriceCache, clocks: Clocks
) -> None:
    cache.update(stamped(clocks, latency_ms=10))
    clocks.advance_ms(300_000)  # five minutes without a quote: the connection was down

    replayed = cache.update(stamped(clocks, latency_ms=300_000))  # the venue replays what it held

    assert replayed is not None and replayed.age_ns(clocks()) > cache.max_quote_age_ns
    assert cache.fresh("BTC-USDT") == {}


def test_a_changed_baseline_is_learnt_within_the_window() -> None:
    lag = FeedLag(window_ns=60 * SECOND)
    now = 0
    assert lag.observe(10 * MS, now) == 0
    # The route got 200 ms slower for good: judged behind at first, then the new normal.
    behind = []
    for _ in range(13):
        now += 10 * SECOND
        behind.append(lag.observe(210 * MS, now))

    assert behind[0] == 200 * MS
    assert behind[-1] == 0
    assert lag.baseline_ns == 210 * MS


def test_feed_lag_is_exported_per_venue(cache: PriceCache, clocks: Clocks) -> None:
    registry = CollectorRegistry()
    register_cache_metrics(cache, registry)
    cache.update(stamped(clocks, latency_ms=10))
    cache.update(stamped(clocks, latency_ms=260))

    assert registry.get_sample_value("smartroute_feed_lag_seconds", {"venue": "okx"}) == 0.25
    offset = registry.get_sample_value("smartroute_feed_clock_offset_seconds", {"venue": "okx"})
    assert offset == (10 * MS - EXCHANGE_AHEAD) / 1e9


def test_the_lag_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lag_window_ms"):
        PriceCache(lag_window_ms=0)
