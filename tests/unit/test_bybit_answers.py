"""Bybit v5 answers: the documented error table, and the parsers of orders, fills, balances and rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connectors.bybit.payloads import (
    envelope,
    parse_balances,
    parse_execution,
    parse_instrument,
    parse_order,
    server_time_ms,
)
from connectors.bybit.trading_errors import BybitClockRejected, api_error, http_error, scrub
from connectors.errors import (
    DuplicateOrder,
    OrderNotFound,
    OutcomeUnknown,
    ParseError,
    RateLimited,
    VenueBanned,
    VenueConnectionError,
    VenueRejected,
)

D = Decimal


@pytest.mark.parametrize(
    ("code", "order_error", "read_error"),
    [
        (10000, OutcomeUnknown, VenueConnectionError),
        (10016, OutcomeUnknown, VenueConnectionError),
        (170007, OutcomeUnknown, VenueConnectionError),
        (170146, OutcomeUnknown, VenueConnectionError),
        (170032, OutcomeUnknown, VenueConnectionError),
        (170001, OutcomeUnknown, VenueConnectionError),
        (10002, BybitClockRejected, BybitClockRejected),
        (10006, RateLimited, RateLimited),
        (170005, RateLimited, RateLimited),
        (10009, VenueBanned, VenueBanned),
        (110072, DuplicateOrder, DuplicateOrder),
        (170141, DuplicateOrder, DuplicateOrder),
        (110001, OrderNotFound, OrderNotFound),
        (170213, OrderNotFound, OrderNotFound),
        (170131, VenueRejected, VenueRejected),
        (10004, VenueRejected, VenueRejected),
        (170210, VenueRejected, VenueRejected),
    ],
)
def test_each_documented_ret_code_has_its_meaning(code: int, order_error: type, read_error: type) -> None:
    as_order = api_error(code, "msg", 200, "place order", may_execute=True)
    as_read = api_error(code, "msg", 200, "query order", may_execute=False)
    assert type(as_order) is order_error and type(as_read) is read_error
    if isinstance(as_order, VenueRejected):
        assert as_order.code == code and as_order.venue == "bybit"


def test_a_finished_order_is_not_found_only_when_cancelling() -> None:
    assert type(
        api_error(170142, "Order has been cancelled", 200, "cancel", may_execute=False, cancelling=True)
    ) is (OrderNotFound)
    assert type(api_error(170142, "Order has been cancelled", 200, "x", may_execute=False)) is VenueRejected


def test_10006_waits_for_the_reset_and_10002_keeps_the_timestamp_signed() -> None:
    limited = api_error(10006, "Too many visits!", 200, "q", may_execute=False, reset_in_s=1.4)
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 1.4
    clock = api_error(10002, "window", 200, "place order", may_execute=True, signed_ms=1_800_000_000_000)
    assert isinstance(clock, BybitClockRejected) and clock.signed_ms == 1_800_000_000_000


@pytest.mark.parametrize(
    ("status", "may_execute", "error"),
    [
        (403, True, VenueBanned),
        (429, False, RateLimited),
        (502, True, OutcomeUnknown),
        (503, False, VenueConnectionError),
        (404, True, VenueRejected),
    ],
)
def test_http_statuses_map_to_the_error_tree(status: int, may_execute: bool, error: type) -> None:
    assert type(http_error(status, "place order", may_execute=may_execute, retry_after_s=None)) is error


def test_a_venue_message_that_quotes_a_secret_is_scrubbed() -> None:
    assert scrub("bad key k-123 for s-456", ("k-123", "s-456")) == "bad key <redacted> for <redacted>"
    assert len(scrub("x" * 5000, ())) == 200


def test_the_envelope_and_server_time_are_read_or_refused() -> None:
    assert envelope(b'{"retCode":0,"retMsg":"OK","result":{"a":1}}') == (0, "OK", {"a": 1})
    for bad in (b"<html>", b"[]", b'{"retCode":"0"}'):
        with pytest.raises(ParseError):
            envelope(bad)
    assert (
        server_time_ms({"timeSecond": "1688639403", "timeNano": "1688639403423213947"})
        == 1688639403423.213947
    )
    assert server_time_ms({"timeSecond": "1688639403"}) == 1688639403000.0


def test_an_order_maps_with_its_totals_and_open_state() -> None:
    item = {"orderId": "1", "orderLinkId": "abc", "symbol": "BTCUSDT", "side": "Sell",
            "orderStatus": "PartiallyFilled", "price": "64000.5", "qty": "0.3", "cumExecQty": "0.1",
            "cumExecValue": "6400.05", "avgPrice": "64000.5", "createdTime": "1684738540559"}  # fmt: skip
    report = parse_order(item, lambda s: "BTC-USDT")
    assert (report.side, report.is_open, report.average_price, report.time_ms) == (
        "sell", True, D("64000.5"), 1684738540559
    )  # fmt: skip
    classic = parse_order(
        item | {"cumExecValue": "", "orderStatus": "PartiallyFilledCanceled"}, lambda s: "BTC-USDT"
    )
    assert classic.cumulative_quote_qty == D("6400.05") and not classic.is_open
    with pytest.raises(ParseError):
        parse_order(item | {"qty": "abc"}, lambda s: "BTC-USDT")


@pytest.mark.parametrize(
    ("side", "is_maker", "fee_rate", "asset"),
    [("Buy", False, "0.001", "BTC"), ("Sell", False, "0.001", "USDT"), ("Buy", True, "-0.0001", "USDT"),
     ("Sell", True, "-0.0001", "BTC"), ("Buy", True, "0.001", "BTC")],
)  # fmt: skip
def test_a_fill_without_fee_currency_follows_the_documented_spot_rule(
    side: str, is_maker: bool, fee_rate: str, asset: str
) -> None:
    item = {"execId": "e1", "execPrice": "64000", "execQty": "0.1", "execFee": "0.0001", "feeCurrency": "",
            "side": side, "isMaker": is_maker, "feeRate": fee_rate, "execTime": "1"}  # fmt: skip
    fill = parse_execution(item, "BTC", "USDT")
    assert (fill.fee, fill.fee_asset) == (D("0.0001"), asset)
    assert parse_execution(item | {"feeCurrency": "mnt"}, "BTC", "USDT").fee_asset == "MNT"


def test_balances_free_is_wallet_minus_locked() -> None:
    coins = [
        {"coin": "USDT", "walletBalance": "1000.5", "locked": "200"},
        {"coin": "BTC", "walletBalance": "0.1"},
    ]
    result = {"list": [{"accountType": "UNIFIED", "coin": coins}]}
    balances = parse_balances(result)
    assert (balances["USDT"].free, balances["USDT"].locked, balances["USDT"].total) == (
        D("800.5"),
        D(200),
        D("1000.5"),
    )
    assert balances["BTC"].free == D("0.1")


def test_spot_rules_come_from_base_precision_tick_size_and_minimum_amount() -> None:
    item = {"symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT", "status": "Trading",
            "lotSizeFilter": {"basePrecision": "0.000001", "minOrderQty": "0.000011", "maxOrderQty": "83",
                              "minOrderAmt": "5"}, "priceFilter": {"tickSize": "0.1"}}  # fmt: skip
    rules = parse_instrument(item)
    assert (rules.step_size, rules.tick_size, rules.min_qty, rules.max_qty, rules.min_notional) == (
        D("0.000001"), D("0.1"), D("0.000011"), D(83), D(5)
    )  # fmt: skip
    assert rules.prepare("buy", D("0.0012345"), D("64000.17")) == (D("0.001234"), D("64000.1"))
    assert not parse_instrument(item | {"status": "Closed"}).tradable
