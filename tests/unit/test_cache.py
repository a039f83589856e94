"""PriceCache: TTL expiry, freshness for decisions, statistics — all on a fake clock."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from connectors.types import Quote
from router.cache import PriceCache
from router.metrics import register_cache_metrics

MS = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now_ns = 1_000 * MS

    def __call__(self) -> int:
        return self.now_ns

    def advance_ms(self, ms: float) -> None:
        self.now_ns += int(ms * MS)


def quote(venue: str, bid: str, ask: str, symbol: str = "BTC-USDT", qty: str = "1") -> Quote:
    return Quote(venue, symbol, Decimal(bid), Decimal(qty), Decimal(ask), Decimal(qty), None, 0, None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> PriceCache:
    return PriceCache(ttl_ms=30_000, max_quote_age_ms=1_500, clock_ns=clock)


def test_entry_is_served_until_ttl_then_expires_and_is_counted(cache: PriceCache, clock: FakeClock) -> None:
    cache.update(quote("binance", "100", "101"))
    clock.advance_ms(30_000)
    assert cache.get("binance", "BTC-USDT") is not None  # exactly at TTL: still live
    clock.advance_ms(1)
    assert cache.get("binance", "BTC-USDT") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations, stats.entries) == (1, 1, 1, 0)


def test_unknown_entry_is_a_miss(cache: PriceCache) -> None:
    assert cache.get("bybit", "ETH-USDT") is None
    assert cache.stats().misses == 1


def test_newer_quote_replaces_older_and_restarts_its_age(cache: PriceCache, clock: FakeClock) -> None:
    cache.update(quote("binance", "100", "101"))
    clock.advance_ms(29_000)
    cache.update(quote("binance", "102", "103"))
    clock.advance_ms(29_000)
    entry = cache.get("binance", "BTC-USDT")
    assert entry is not None and entry.quote.bid == Decimal("102")
    assert cache.stats().entries == 1


def test_best_price_picks_lowest_ask_and_highest_bid_across_fresh_venues(cache: PriceCache) -> None:
    cache.update(quote("binance", "100.0", "100.5"))
    cache.update(quote("bybit", "100.2", "100.4"))
    best_buy = cache.get_best_price("BTC-USDT", "buy")
    best_sell = cache.get_best_price("BTC-USDT", "sell")
    assert best_buy is not None and (best_buy.venue, best_buy.price) == ("bybit", Decimal("100.4"))
    assert best_sell is not None and (best_sell.venue, best_sell.price) == ("bybit", Decimal("100.2"))


def test_best_price_ignores_quotes_older_than_max_quote_age(cache: PriceCache, clock: FakeClock) -> None:
    cache.update(quote("bybit", "100.2", "100.4"))  # the better price, but it will be stale
    clock.advance_ms(1_000)
    cache.update(quote("binance", "100.0", "100.5"))
    clock.advance_ms(501)  # bybit is now 1501 ms old, binance 501 ms
    best = cache.get_best_price("BTC-USDT", "buy")
    assert best is not None and best.venue == "binance"
    assert best.quote_age_ms == pytest.approx(501)
    # Stale is not expired: the entry is still cached for status views.
    assert cache.get("bybit", "BTC-USDT") is not None


def test_best_price_never_serves_expired_quotes(cache: PriceCache, clock: FakeClock) -> None:
    cache.update(quote("binance", "100", "101"))
    clock.advance_ms(40_000)
    assert cache.get_best_price("BTC-USDT", "sell") is None
    assert cache.stats().entries == 0


def test_best_price_tie_prefers_larger_size_then_venue_id(cache: PriceCache) -> None:
    cache.update(quote("bybit", "100", "101", qty="1"))
    cache.update(quote("binance", "100", "101", qty="1"))
    cache.update(quote("okx", "100", "101", qty="2"))
    best = cache.get_best_price("BTC-USDT", "buy")
    assert best is not None and best.venue == "okx"
    cache.update(quote("okx", "100", "101", qty="1"))
    best = cache.get_best_price("BTC-USDT", "buy")
    assert best is not None and best.venue == "binance"


def test_best_price_rejects_unknown_action(cache: PriceCache) -> None:
    with pytest.raises(ValueError, match="action"):
        cache.get_best_price("BTC-USDT", "short")  # type: ignore[arg-type]


def test_purge_expired_drops_only_expired(cache: PriceCache, clock: FakeClock) -> None:
    cache.update(quote("binance", "100", "101"))
    clock.advance_ms(20_000)
    cache.update(quote("bybit", "100", "101"))
    clock.advance_ms(15_000)
    assert cache.purge_expired() == 1
    assert cache.stats().entries == 1
    assert cache.stats().expirations == 1


def test_statistics_are_exposed_as_prometheus_metrics(cache: PriceCache, clock: FakeClock) -> None:
    registry = CollectorRegistry()
    register_cache_metrics(cache, registry)
    cache.update(quote("binance", "100", "101"))
    cache.get("binance", "BTC-USDT")
    cache.get("okx", "BTC-USDT")
    clock.advance_ms(30_001)
    cache.get("binance", "BTC-USDT")
    assert registry.get_sample_value("smartroute_cache_hits_total") == 1
    assert registry.get_sample_value("smartroute_cache_misses_total") == 2
    assert registry.get_sample_value("smartroute_cache_expirations_total") == 1
    assert registry.get_sample_value("smartroute_cache_entries") == 0


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        PriceCache(ttl_ms=0)


def test_entries_count_each_venue_and_symbol_once_however_often_it_is_updated(cache: PriceCache) -> None:
    for bid in ("100", "101", "102"):
        cache.update(quote("binance", bid, "103"))
        cache.update(quote("bybit", bid, "103"))
        cache.update(quote("binance", bid, "103", symbol="ETH-USDT"))
    assert cache.stats().entries == 3
    entry = cache.get("binance", "BTC-USDT")
    assert entry is not None and entry.quote.bid == Decimal("102")


def test_fresh_drops_expired_entries_it_meets_and_serves_the_rest(
    cache: PriceCache, clock: FakeClock
) -> None:
    cache.update(quote("binance", "100", "101"))
    clock.advance_ms(29_000)
    cache.update(quote("bybit", "100", "101"))
    clock.advance_ms(1_001)  # binance is now past TTL; bybit is 1001 ms old: fresh
    assert list(cache.fresh("BTC-USDT")) == ["bybit"]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations, stats.entries) == (1, 0, 1, 1)
    clock.advance_ms(500)  # bybit 1501 ms old: cached but not fresh, which is a miss
    assert cache.fresh("BTC-USDT") == {}
    assert cache.fresh("BTC-USDT", max_age_ms=2_000).keys() == {"bybit"}
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (2, 1, 1)


def test_an_entry_records_when_the_quote_was_taken_and_cannot_be_altered(
    cache: PriceCache, clock: FakeClock
) -> None:
    q = quote("binance", "100", "101")
    entry = cache.update(q, age_ns=250 * MS)
    clock.advance_ms(100)
    assert entry is not None
    assert entry.quote is q and entry.age_ns(clock()) == 350 * MS
    with pytest.raises(AttributeError):
        entry.stored_ns = clock()  # type: ignore[misc]


def test_an_invalidated_entry_is_withdrawn_and_counted(cache: PriceCache) -> None:
    cache.update(quote("binance", "100", "101"))
    assert cache.invalidate("binance", "BTC-USDT") is True
    assert cache.invalidate("binance", "BTC-USDT") is False
    assert cache.get("binance", "BTC-USDT") is None
    stats = cache.stats()
    assert (stats.entries, stats.invalidations) == (0, 1)
    cache.update(quote("binance", "100", "101"))
    assert cache.stats().entries == 1
