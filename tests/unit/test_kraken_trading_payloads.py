"""Kraken's error strings mapped onto the error tree, and its REST payloads onto the trading seam's values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from connectors.errors import (
    ClockRejected,
    DuplicateOrder,
    OrderNotFound,
    OutcomeUnknown,
    ParseError,
    RateLimited,
    VenueBanned,
    VenueRejected,
)
from connectors.kraken.payloads import (
    asset_name,
    fee_asset,
    parse_asset_pairs,
    parse_balances,
    parse_order,
    parse_taker_fee_bps,
)
from connectors.kraken.trading_errors import classify, errors_of, from_http_status

D = Decimal
NOW_S = 1_800_000_000.0


def refusal(*errors: str, may_execute: bool = True) -> Any:
    return classify(
        list(errors),
        action="place order",
        may_execute=may_execute,
        status=200,
        now_s=NOW_S,
        rest_decay_s=45.0,
        order_decay_s=60.0,
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("EService:Unavailable", OutcomeUnknown),
        ("EService:Busy", OutcomeUnknown),
        ("EGeneral:Internal error", OutcomeUnknown),
        ("EGeneral:Internal error:1234", OutcomeUnknown),
        ("EService:Deadline elapsed", VenueRejected),
        ("EAPI:Rate limit exceeded", RateLimited),
        ("EOrder:Rate limit exceeded", RateLimited),
        ("EService: Throttled: 1800000010", RateLimited),
        ("EGeneral:Temporary lockout", VenueBanned),
        ("EAPI:Invalid nonce", ClockRejected),
        ("EOrder:Unknown order", OrderNotFound),
        ("EOrder:Duplicate order", DuplicateOrder),
        ("EAPI:Invalid key", VenueRejected),
        ("EAPI:Invalid signature", VenueRejected),
        ("EOrder:Insufficient funds", VenueRejected),
        ("EGeneral:Invalid arguments:volume", VenueRejected),
    ],
)
def test_each_documented_error_string_has_its_meaning(error: str, kind: type) -> None:
    assert type(refusal(error).error) is kind


def test_an_unknown_outcome_code_on_a_read_is_a_plain_refusal_not_an_unknown_order() -> None:
    assert type(refusal("EService:Unavailable", may_execute=False).error) is VenueRejected


def test_each_throttling_answer_holds_back_what_it_concerns_for_as_long_as_kraken_says() -> None:
    throttled = refusal("EService: Throttled: 1800000010")
    assert (throttled.hold_all_s, throttled.error.retry_after_s) == (11.0, 11.0)  # + 1 s rounding
    assert refusal("EService:Throttled:[1800000005]").hold_all_s == 6.0
    assert refusal("EAPI:Rate limit exceeded").hold_all_s == 45.0
    order = refusal("EOrder:Rate limit exceeded")
    assert (order.hold_all_s, order.hold_pair_s) == (None, 60.0)
    assert refusal("EGeneral:Temporary lockout").ban_s == 900.0


def test_warnings_are_not_errors_and_http_errors_without_an_envelope_are_classified() -> None:
    assert errors_of({"error": ["WGeneral:Something"], "result": {}}) == []
    assert errors_of(b"<html>") == []
    limited = from_http_status(429, 7.0, action="x", may_execute=False)
    assert limited is not None and limited.hold_all_s == 7.0
    gateway = from_http_status(502, None, action="place order", may_execute=True)
    assert gateway is not None and type(gateway.error) is OutcomeUnknown
    assert from_http_status(404, None, action="x", may_execute=False) is None


@pytest.mark.parametrize(
    ("code", "name"),
    [("XXBT", "BTC"), ("XBT", "BTC"), ("ZUSD", "USD"), ("XETH", "ETH"), ("XXDG", "DOGE"), ("USDT", "USDT"),
     ("XTZ", "XTZ"), ("SOL", "SOL")],
)  # fmt: skip
def test_kraken_asset_codes_map_to_canonical_names(code: str, name: str) -> None:
    assert asset_name(code) == name


PAIRS = {
    "XXBTZUSD": {"altname": "XBTUSD", "wsname": "XBT/USD", "base": "XXBT", "quote": "ZUSD",
                 "pair_decimals": 1, "lot_decimals": 8, "ordermin": "0.0001", "costmin": "0.5",
                 "tick_size": "0.1", "status": "online"},
    "XDGUSD": {"altname": "XDGUSD", "wsname": "XDG/USD", "base": "XXDG", "quote": "ZUSD",
               "pair_decimals": 7, "lot_decimals": 8, "ordermin": "13", "costmin": "0.5",
               "status": "limit_only"},
}  # fmt: skip


def test_asset_pairs_give_canonical_symbols_and_rules_with_a_tick_from_decimals_when_absent() -> None:
    pairs = parse_asset_pairs(PAIRS)
    assert set(pairs) == {"BTC-USD", "DOGE-USD"}
    doge = pairs["DOGE-USD"]
    assert (doge.key, doge.altname, doge.rules.tick_size, doge.rules.min_qty) == (
        "XDGUSD",
        "XDGUSD",
        D("1E-7"),
        D(13),
    )
    assert doge.rules.tradable  # limit_only still takes limit orders


ORDER = {
    "refid": None, "userref": 0, "cl_ord_id": "5c1f4c2e-8d3b-4b0e-9f3a-6c1d2e3f4a5b", "status": "closed",
    "opentm": D("1705260547.472"), "descr": {"pair": "XBTUSD", "type": "sell", "ordertype": "limit",
    "price": "37500.0"}, "vol": "1.25000000", "vol_exec": "1.00000000", "cost": "37510.00000",
    "fee": "97.52600", "price": "37510.0", "oflags": "", "trades": ["T1", "T2"],
}  # fmt: skip


def test_an_order_maps_to_a_report_and_its_fee_asset_follows_its_flags() -> None:
    report = parse_order("OABC-1", ORDER, "BTC-USD")
    assert (report.side, report.status, report.is_open, report.time_ms) == (
        "sell",
        "closed",
        False,
        1705260547472,
    )
    assert (report.orig_qty, report.executed_qty, report.average_price) == (D("1.25"), D(1), D("37510"))
    rules = parse_asset_pairs(PAIRS)["BTC-USD"].rules
    assert fee_asset(ORDER, "sell", rules) == "BTC"  # Kraken's default when selling: base
    assert fee_asset(ORDER | {"oflags": "fciq"}, "sell", rules) == "USD"
    assert fee_asset(ORDER, "buy", rules) == "USD"
    with pytest.raises(ParseError, match="vol_exec"):
        parse_order("OABC-1", {k: v for k, v in ORDER.items() if k != "vol_exec"}, "BTC-USD")
    with pytest.raises(ParseError, match="finite"):
        parse_order("OABC-1", ORDER | {"cost": "NaN"}, "BTC-USD")


def test_balances_subtract_what_orders_hold_and_skip_earn_balances_and_fees_come_in_bps() -> None:
    balances = parse_balances(
        {
            "ZUSD": {"balance": "25435.21", "hold_trade": "8249.76"},
            "XBT.F": {"balance": "1", "hold_trade": "0"},
        }
    )
    assert list(balances) == ["USD"]
    assert (balances["USD"].free, balances["USD"].locked) == (D("17185.45"), D("8249.76"))
    pair = parse_asset_pairs(PAIRS)["BTC-USD"]
    assert parse_taker_fee_bps({"fees": {"XXBTZUSD": {"fee": "0.2600"}}}, pair) == D(26)
    assert parse_taker_fee_bps({"fees": {}}, pair) is None
