"""What each Coinbase REST answer means (trading_errors), and the payload parsers, on documented shapes."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from connectors.coinbase.payloads import parse_fills, parse_order, parse_product, parse_taker_fee_bps
from connectors.coinbase.trading_errors import (
    accepted_order_id,
    http_error,
    rate_limit_state,
    scrub,
    unauthorized,
)
from connectors.errors import (
    ClockRejected,
    OrderNotFound,
    OutcomeUnknown,
    ParseError,
    VenueError,
    VenueRejected,
)

D = Decimal
NOT_FOUND = orjson.dumps(
    {"error": "NOT_FOUND", "error_details": "order with this orderID was not found", "message": "..."}
)


@pytest.mark.parametrize(
    ("status", "body", "may_execute", "expected"),
    [
        (503, b"<html>503</html>", True, OutcomeUnknown),
        (500, b'{"error":"INTERNAL","message":"boom"}', True, OutcomeUnknown),
        (502, b"", False, VenueError),
        (404, NOT_FOUND, False, OrderNotFound),
        (400, b'{"error":"INVALID_ARGUMENT","message":"bad product"}', True, VenueRejected),
        (
            403,
            b'{"error":"PERMISSION_DENIED","error_details":"Missing required scopes"}',
            True,
            VenueRejected,
        ),
    ],
)
def test_http_answers_map_to_the_error_tree(
    status: int, body: bytes, may_execute: bool, expected: type[Exception]
) -> None:
    error = http_error(status, body, action="place order", may_execute=may_execute)
    assert type(error) is expected
    if status >= 500 and not may_execute:
        assert not isinstance(error, OutcomeUnknown | VenueRejected)


def test_a_401_is_a_clock_refusal_only_when_the_clock_had_moved() -> None:
    assert type(unauthorized(b"Unauthorized\n", clock_moved=False)) is VenueRejected
    assert type(unauthorized(b"Unauthorized\n", clock_moved=True)) is ClockRejected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"success": True, "success_response": {"order_id": "o-1"}}, "o-1"),
        ({"success": True, "order_id": "o-2"}, "o-2"),
        ({"success": False, "error_response": {"error": "INSUFFICIENT_FUND"}}, VenueRejected),
        (
            {"success": False, "error_response": {"new_order_failure_reason": "INVALID_LIMIT_PRICE"}},
            VenueRejected,
        ),
        ({"success": False, "failure_reason": "UNKNOWN_FAILURE_REASON"}, OutcomeUnknown),
        ({"success": False}, OutcomeUnknown),
        ({"success": True}, OutcomeUnknown),
        ({"order_id": "o-3"}, OutcomeUnknown),
        ([], OutcomeUnknown),
    ],
)
def test_a_create_order_answer_is_an_order_id_a_refusal_or_unknown(answer: object, expected: object) -> None:
    if isinstance(expected, str):
        assert accepted_order_id(answer, "cid") == expected
    else:
        assert isinstance(expected, type)
        with pytest.raises(expected):
            accepted_order_id(answer, "cid")


def test_the_rate_limit_reset_is_read_as_epoch_seconds_or_seconds_from_now() -> None:
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1800000004"}
    assert rate_limit_state(headers, 1_800_000_000.5) == (0, 3.5)
    assert rate_limit_state({"x-ratelimit-remaining": "3", "x-ratelimit-reset": "0.25"}, 1e9) == (3, 0.25)
    assert rate_limit_state({}, 1e9) == (None, None)
    assert rate_limit_state({"x-ratelimit-remaining": "x", "x-ratelimit-reset": "soon"}, 1e9) == (None, None)


def test_scrub_removes_secrets_bearer_tokens_and_jwts() -> None:
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJrZXkifQ.c2lnbmF0dXJlLWJ5dGVz"
    text = scrub(
        f"key organizations/x/apiKeys/y header Bearer {token} raw {token}", ["organizations/x/apiKeys/y"]
    )
    assert "organizations/x" not in text and token not in text and "c2lnbmF0dXJl" not in text


def test_an_order_parses_its_limit_configuration_and_fills() -> None:
    order = {
        "order_id": "o-1", "product_id": "BTC-USD", "side": "SELL", "client_order_id": "c-1",
        "status": "EXPIRED", "created_time": "2026-12-07T21:00:00.123Z", "filled_size": "0.3",
        "filled_value": "19200.15", "order_configuration": {"sor_limit_ioc": {"base_size": "0.5",
                                                                              "limit_price": "63999.99"}},
    }  # fmt: skip
    report = parse_order(order, "BTC-USD")
    assert (report.side, report.is_open, report.price, report.orig_qty) == (
        "sell",
        False,
        D("63999.99"),
        D("0.5"),
    )
    assert report.average_price == D("64000.5") and report.time_ms == 1796677200123
    assert parse_order(order | {"status": "OPEN"}, "BTC-USD").is_open
    fill = {"trade_id": "t", "price": "2", "size": "10", "commission": "0.12", "size_in_quote": True}
    fills = parse_fills({"fills": [fill | {"trade_time": "2026-12-07T21:00:00Z"}]}, "USD")
    assert (fills[0].quantity, fills[0].fee, fills[0].fee_asset) == (D(5), D("0.12"), "USD")
    with pytest.raises(ParseError):
        parse_fills({"fills": [{"price": "1e", "size": "1"}]}, "USD")


def test_a_product_in_post_only_or_cancel_only_mode_is_not_tradable_and_aliases_are_kept() -> None:
    product = {
        "product_id": "BTC-USDC", "base_increment": "0.00000001", "quote_increment": "0.01",
        "price_increment": "0.01", "base_min_size": "0.00000001", "quote_min_size": "1", "status": "online",
        "alias": "", "alias_to": ["BTC-USD"],
    }  # fmt: skip
    rules, aliases = parse_product(product, "BTC-USDC")
    assert rules.tradable and aliases == ("BTC-USDC", "BTC-USD")
    for flag in ("post_only", "cancel_only", "trading_disabled"):
        assert not parse_product(product | {flag: True}, "BTC-USDC")[0].tradable
    assert not parse_product(product | {"status": "delisted"}, "BTC-USDC")[0].tradable
    assert parse_taker_fee_bps({"fee_tier": {"taker_fee_rate": "0.0025"}}) == D(25)
    assert parse_taker_fee_bps({"fee_tier": {}}) is None
