"""OKX v5 REST signing: the documented construction, pinned with the docs' sample secret."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from connectors.okx.signing import OkxCredentials, auth_headers, iso_timestamp, sign

# https://www.okx.com/docs-v5/en/#overview-rest-authentication prints this sample SecretKey but no
# output; the two outputs below are derived pins (EXCHANGES-TRADING.md §2.3), not official vectors.
DOC_SECRET = "22582BD0CFF14C41EDBF1AB98506286D"
DOC_TIMESTAMP = "2020-12-08T09:08:57.715Z"
DOC_ORDER_BODY = (
    '{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"b15",'
    '"side":"buy","ordType":"limit","px":"2.15","sz":"2"}'
)  # fmt: skip


def test_a_get_signs_the_path_with_its_query_and_an_empty_body() -> None:
    signature = sign(DOC_SECRET, DOC_TIMESTAMP, "GET", "/api/v5/account/balance?ccy=BTC", "")
    assert signature == "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY="


def test_a_post_signs_the_exact_json_body() -> None:
    signature = sign(DOC_SECRET, DOC_TIMESTAMP, "POST", "/api/v5/trade/order", DOC_ORDER_BODY)
    assert signature == "dI6rrL9rXW/HdaPKJ/6LC1OgvH4/PYju6R3CqixMTNQ="
    assert sign(DOC_SECRET, DOC_TIMESTAMP, "post", "/api/v5/trade/order", DOC_ORDER_BODY) == signature
    assert sign(DOC_SECRET, DOC_TIMESTAMP, "POST", "/api/v5/trade/order", DOC_ORDER_BODY + " ") != signature


def test_the_signature_is_base64_hmac_sha256_of_the_prehash_string() -> None:
    prehash = f"{DOC_TIMESTAMP}GET/api/v5/account/balance?ccy=BTC"
    expected = base64.b64encode(hmac.new(DOC_SECRET.encode(), prehash.encode(), hashlib.sha256).digest())
    assert sign(DOC_SECRET, DOC_TIMESTAMP, "GET", "/api/v5/account/balance?ccy=BTC", "") == expected.decode()


@pytest.mark.parametrize(
    ("epoch_ms", "text"),
    [
        (1607418537715, "2020-12-08T09:08:57.715Z"),  # the docs' example timestamp
        (1607418537005, "2020-12-08T09:08:57.005Z"),  # milliseconds keep their leading zeros
        (1607418537000, "2020-12-08T09:08:57.000Z"),
    ],
)
def test_the_timestamp_is_iso_8601_utc_with_milliseconds(epoch_ms: int, text: str) -> None:
    assert iso_timestamp(epoch_ms) == text


def test_the_headers_carry_key_signature_timestamp_and_passphrase_and_demo_only_when_asked() -> None:
    credentials = OkxCredentials("key-1", DOC_SECRET, "pass-1")
    live = auth_headers(
        credentials, epoch_ms=1607418537715, method="POST", request_path="/api/v5/trade/order",
        body=DOC_ORDER_BODY, simulated=False,
    )  # fmt: skip
    demo = auth_headers(
        credentials, epoch_ms=1607418537715, method="POST", request_path="/api/v5/trade/order",
        body=DOC_ORDER_BODY, simulated=True,
    )  # fmt: skip
    assert live == {
        "OK-ACCESS-KEY": "key-1",
        "OK-ACCESS-SIGN": "dI6rrL9rXW/HdaPKJ/6LC1OgvH4/PYju6R3CqixMTNQ=",
        "OK-ACCESS-TIMESTAMP": DOC_TIMESTAMP,
        "OK-ACCESS-PASSPHRASE": "pass-1",
        "Content-Type": "application/json",
    }
    assert demo == live | {"x-simulated-trading": "1"}


def test_credentials_never_print_their_values() -> None:
    credentials = OkxCredentials("canary-key", "canary-secret", "canary-passphrase")
    for text in (repr(credentials), str(credentials), f"{credentials!r}", repr([credentials])):
        assert "canary" not in text
    assert credentials.values() == ("canary-key", "canary-secret", "canary-passphrase")


@pytest.mark.parametrize("missing", ["api_key", "api_secret", "passphrase"])
def test_credentials_refuse_an_empty_value(missing: str) -> None:
    values = {"api_key": "k", "api_secret": "s", "passphrase": "p"} | {missing: ""}
    with pytest.raises(ValueError, match=missing.replace("_", " ")):
        OkxCredentials(**values)
