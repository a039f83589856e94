"""Bybit v5 signing: pinned vectors, the exact bytes signed, and credentials that never print."""

from __future__ import annotations

import pytest

from connectors.bybit.signing import (
    BybitCredentials,
    check_order_link_id,
    json_body,
    query_string,
    sign,
    signed_headers,
    string_to_sign,
)

# EXCHANGES-TRADING.md §1.3: the guide's own strings to sign under a derived secret. Not official
# (the docs do not publish their secret), computed with the documented algorithm.
DOC_SECRET = "test-secret-not-real"
DOC_GET = "1658384314791XXXXXXXXXX5000category=option&symbol=BTC-29JUL22-25000-C"
DOC_POST = '1658385579423XXXXXXXXXX5000{"category": "option"}'

# Our own pin over an order exactly as BybitTrading sends it; cross-checked with
# `printf '%s' "<string>" | openssl dgst -sha256 -hmac <secret>`.
KEY = "fake-bybit-key-0123"
SECRET = "fake-bybit-secret-abcdefghij"
ORDER = {
    "category": "spot",
    "symbol": "BTCUSDT",
    "side": "Buy",
    "orderType": "Limit",
    "qty": "0.1",
    "price": "64001",
    "timeInForce": "IOC",
    "orderLinkId": "0f1e2d3c4b5a49687766554433221100",
}
ORDER_BODY = (
    '{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.1",'
    '"price":"64001","timeInForce":"IOC","orderLinkId":"0f1e2d3c4b5a49687766554433221100"}'
)
ORDER_SIGNATURE = "ff8f9be09dd7e50b8f14ad9c873503ecb3273a25cbfe46aed5c8078f5caef941"
QUERY = "category=spot&orderLinkId=0f1e2d3c4b5a49687766554433221100&symbol=BTCUSDT"
QUERY_SIGNATURE = "a5a317137d2f69e160e4ff414fae91f15537d7bfbaf460f7da8168143f07dc24"


def test_the_guides_strings_sign_to_the_derived_pins() -> None:
    assert sign(DOC_SECRET, DOC_GET) == "e9d95f93790258d5680772d879abb9df2571ae26d3edb5f36973f9757eef3a16"
    assert sign(DOC_SECRET, DOC_POST) == "4283a85d657545fbe812cf1dc6f0fd91360428d15b028b0b9e1754fe043fabde"


def test_an_order_body_is_signed_over_the_exact_json_sent() -> None:
    body = json_body(ORDER)
    headers = signed_headers(BybitCredentials(KEY, SECRET), 1_800_000_000_000, 5000, body)
    assert body == ORDER_BODY
    assert headers == {
        "X-BAPI-API-KEY": KEY,
        "X-BAPI-TIMESTAMP": "1800000000000",
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": ORDER_SIGNATURE,
    }


def test_a_query_is_signed_over_its_sorted_encoded_string() -> None:
    query = query_string(
        {"symbol": "BTCUSDT", "orderLinkId": "0f1e2d3c4b5a49687766554433221100", "category": "spot"}
    )
    assert query == QUERY
    assert sign(SECRET, string_to_sign(1_800_000_000_000, KEY, 5000, query)) == QUERY_SIGNATURE
    assert query_string({"cursor": "page_args=fd43&symbol=6"}) == "cursor=page_args%3Dfd43%26symbol%3D6"


def test_any_changed_byte_changes_the_signature() -> None:
    changed = ORDER_BODY.replace('"qty":"0.1"', '"qty":"0.2"')
    assert sign(SECRET, string_to_sign(1_800_000_000_000, KEY, 5000, changed)) != ORDER_SIGNATURE
    assert sign(SECRET, string_to_sign(1_800_000_000_001, KEY, 5000, ORDER_BODY)) != ORDER_SIGNATURE


def test_credentials_never_print_their_secrets() -> None:
    credentials = BybitCredentials("canary-key-7f3a", "canary-secret-9b2c")
    for text in (repr(credentials), str(credentials), f"{credentials}", repr([credentials])):
        assert "canary" not in text
    assert credentials.values() == ("canary-key-7f3a", "canary-secret-9b2c")
    with pytest.raises(ValueError, match="secret is empty"):
        BybitCredentials("key", "")


@pytest.mark.parametrize("bad", ["", "a" * 37, "has space", "dot.ted", "ünï"])
def test_an_order_link_id_outside_the_documented_charset_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid bybit orderLinkId"):
        check_order_link_id(bad)
    assert check_order_link_id("0f1e2d3c-4b5a_4968") == "0f1e2d3c-4b5a_4968"
