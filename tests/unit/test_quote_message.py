"""The Quote message of smartroute.quotes: round trip, refusals, and age carried into the cache."""

from __future__ import annotations

from decimal import Decimal

import pytest
from contract import assert_valid

from connectors.types import Quote
from router.cache import PriceCache

QUOTE = Quote(
    "okx", "BTC-USDT", Decimal("64000.10"), Decimal("0.5"), Decimal("64000.2"), Decimal("1.25"), 17, 99, 7
)


def test_quote_message_round_trips_exactly_and_matches_the_schema() -> None:
    message = QUOTE.as_message()
    assert_valid("quote", message)
    assert message["bid"] == "64000.1" and message["exchange_ns"] == 17 and message["seq"] == 7
    assert Quote.from_message(message) == QUOTE


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"bid": 64000.1},  # a JSON number, not a decimal string
        {"bid": "NaN"},
        {"ask": "0"},
        {"bid_qty": "-1"},
        {"venue": None},
        {"received_ns": True},
        {"seq": "7"},
    ],
)
def test_a_malformed_quote_message_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Quote.from_message(QUOTE.as_message() | change)


def test_a_quote_that_arrives_aged_is_stale_sooner() -> None:
    now = [10_000_000_000]
    cache = PriceCache(ttl_ms=30_000, max_quote_age_ms=1_500, clock_ns=lambda: now[0])
    cache.update(QUOTE, age_ns=1_000_000_000)  # one second in transit
    assert cache.fresh("BTC-USDT")["okx"].age_ns(now[0]) == 1_000_000_000
    now[0] += 600_000_000
    assert cache.fresh("BTC-USDT") == {}  # 1.6 s old: past max_quote_age_ms
