"""Binance symbol filters: parsed from real exchangeInfo shapes, rounding that never hurts, min notional."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.binance.errors import OrderRuleViolation
from connectors.binance.filters import SymbolFilters, parse_exchange_info
from connectors.binance.ratelimit import RateLimitRule, parse_rate_limits
from connectors.errors import ParseError

# Shapes as GET /api/v3/exchangeInfo returns them (values of BTCUSDT and LTCBTC on the live venue).
BTCUSDT: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "status": "TRADING",
    "baseAsset": "BTC",
    "baseAssetPrecision": 8,
    "quoteAsset": "USDT",
    "quotePrecision": 8,
    "quoteAssetPrecision": 8,
    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
         "tickSize": "0.01000000"},
        {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
         "stepSize": "0.00001000"},
        {"filterType": "ICEBERG_PARTS", "limit": 10},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "76.27796122",
         "stepSize": "0.00000000"},
        {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
         "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
        {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
         "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
        {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
         "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
    ],
    "permissions": [],
    "permissionSets": [["SPOT", "MARGIN"]],
}  # fmt: skip
LTCBTC: dict[str, Any] = {
    "symbol": "LTCBTC",
    "status": "TRADING",
    "baseAsset": "LTC",
    "quoteAsset": "BTC",
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.00000100", "maxPrice": "100000.00000000",
         "tickSize": "0.00000100"},
        {"filterType": "LOT_SIZE", "minQty": "0.00100000", "maxQty": "100000.00000000",
         "stepSize": "0.00100000"},
        {"filterType": "MIN_NOTIONAL", "minNotional": "0.00010000", "applyToMarket": True, "avgPriceMins": 5},
    ],
}  # fmt: skip
INFO = {
    "timezone": "UTC",
    "serverTime": 1565246363776,
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
    ],
    "exchangeFilters": [],
    "symbols": [BTCUSDT, LTCBTC],
}


@pytest.fixture
def btc() -> SymbolFilters:
    return parse_exchange_info(INFO)["BTCUSDT"]


def d(text: str) -> Decimal:
    return Decimal(text)


def test_exchange_info_parses_every_symbol_with_its_filters(btc: SymbolFilters) -> None:
    ltc = parse_exchange_info(INFO)["LTCBTC"]
    assert (btc.symbol, btc.tick_size, btc.step_size, btc.min_qty) == (
        "BTC-USDT",
        d("0.01"),
        d("0.00001"),
        d("0.00001"),
    )
    assert (btc.min_notional, btc.max_notional) == (d(5), d(9_000_000))
    assert (ltc.symbol, ltc.min_notional, ltc.max_notional) == ("LTC-BTC", d("0.0001"), None)


def test_a_buy_price_rounds_down_and_a_sell_price_up_to_the_tick(btc: SymbolFilters) -> None:
    assert btc.round_price(d("64000.567"), "buy") == d("64000.56")
    assert btc.round_price(d("64000.561"), "sell") == d("64000.57")
    assert btc.round_price(d("64000.56"), "buy") == btc.round_price(d("64000.56"), "sell") == d("64000.56")


def test_a_quantity_rounds_down_to_the_lot_step(btc: SymbolFilters) -> None:
    assert btc.prepare("buy", d("0.123456789"), d("64000.567")) == (d("0.12345"), d("64000.56"))
    assert btc.prepare("sell", d("0.5"), d("63999.999")) == (d("0.5"), d("64000.00"))


def test_an_order_below_min_notional_is_refused_before_it_is_sent(btc: SymbolFilters) -> None:
    with pytest.raises(OrderRuleViolation, match=r"notional 4 .* below the minimum 5"):
        btc.prepare("buy", d("0.0001"), d("40000"))


def test_rounding_down_that_drops_the_notional_below_the_minimum_is_refused(btc: SymbolFilters) -> None:
    assert btc.prepare("buy", d("0.000125"), d("41667")) == (d("0.00012"), d("41667"))  # 5.00004
    with pytest.raises(OrderRuleViolation, match="below the minimum 5"):
        btc.prepare("buy", d("0.000125"), d("40000"))  # 0.000125 × 40000 = 5, but 0.00012 × 40000 = 4.8


def test_a_quantity_below_the_lot_minimum_is_refused(btc: SymbolFilters) -> None:
    with pytest.raises(OrderRuleViolation, match=r"quantity 0\.000009 is below the minimum 0\.00001"):
        btc.prepare("buy", d("0.000009"), d("9000000"))


def test_the_legacy_min_notional_filter_applies_to_limit_orders() -> None:
    ltc = parse_exchange_info(INFO)["LTCBTC"]
    assert ltc.prepare("sell", d("0.1"), d("0.0015005")) == (d("0.1"), d("0.001501"))
    with pytest.raises(OrderRuleViolation, match=r"below the minimum 0\.0001"):
        ltc.prepare("buy", d("0.05"), d("0.0015"))  # 0.000075 BTC


def test_max_notional_price_bounds_and_status_are_enforced(btc: SymbolFilters) -> None:
    with pytest.raises(OrderRuleViolation, match="above the maximum 9000000"):
        btc.prepare("buy", d("100"), d("100000"))
    with pytest.raises(OrderRuleViolation, match="below the minimum price"):
        btc.prepare("buy", d("1"), d("0.009"))
    halted = parse_exchange_info(INFO | {"symbols": [BTCUSDT | {"status": "BREAK"}]})["BTCUSDT"]
    with pytest.raises(OrderRuleViolation, match="not trading"):
        halted.prepare("buy", d("1"), d("64000"))


def test_a_zero_tick_or_step_disables_that_rounding() -> None:
    entry = copy.deepcopy(BTCUSDT)
    entry["filters"][0]["tickSize"] = "0.00000000"
    entry["filters"][1]["stepSize"] = "0.00000000"
    rules = parse_exchange_info(INFO | {"symbols": [entry]})["BTCUSDT"]
    assert rules.prepare("buy", d("0.1234567"), d("64000.12345")) == (d("0.1234567"), d("64000.12345"))


@given(
    quantity=st.decimals(min_value=d("0.00001"), max_value=d("100"), places=9),
    price=st.decimals(min_value=d("100"), max_value=d("200000"), places=6),
    side=st.sampled_from(["buy", "sell"]),
)
def test_rounding_never_exceeds_the_quantity_nor_worsens_the_limit(
    quantity: Decimal, price: Decimal, side: str
) -> None:
    rules = parse_exchange_info(INFO)["BTCUSDT"]
    qty = rules.round_quantity(quantity)
    rounded = rules.round_price(price, "buy" if side == "buy" else "sell")
    assert qty <= quantity and quantity - qty < rules.step_size
    assert (qty - rules.min_qty) % rules.step_size == 0
    assert (rounded - rules.min_price) % rules.tick_size == 0
    if side == "buy":
        assert price - rules.tick_size < rounded <= price
    else:
        assert price <= rounded < price + rules.tick_size


@pytest.mark.parametrize(
    ("info", "problem"),
    [
        ({"symbols": "BTCUSDT"}, "'symbols' must be list"),
        ({"symbols": [{"symbol": "BTCUSDT"}]}, "'filters' must be list"),
        ({"symbols": [BTCUSDT | {"baseAsset": None}]}, "'baseAsset' must be str"),
        (
            {"symbols": [BTCUSDT | {"filters": [{"filterType": "LOT_SIZE", "stepSize": "0.0x"}]}]},
            "not a decimal",
        ),
    ],
)
def test_a_malformed_exchange_info_is_a_parse_error(info: dict[str, Any], problem: str) -> None:
    with pytest.raises(ParseError, match=problem):
        parse_exchange_info(info)


def test_rate_limits_come_from_exchange_info_with_their_response_headers() -> None:
    rules = parse_rate_limits(INFO)
    assert rules[0] == RateLimitRule("REQUEST_WEIGHT", "MINUTE", 1, 6000)
    assert [(r.interval_s, r.header) for r in rules] == [
        (60, "x-mbx-used-weight-1m"),
        (10, "x-mbx-order-count-10s"),
        (86400, "x-mbx-order-count-1d"),
        (300, None),
    ]
