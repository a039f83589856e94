"""Bybit v5 request signing (HMAC-SHA256), the credentials it needs, and the exact bytes it covers.

From `docs/v5/guide.mdx` (https://bybit-exchange.github.io/docs/v5/guide), "Create A Request":

    string to sign = timestamp + api_key + recv_window + (queryString | jsonBodyString)
    X-BAPI-SIGN    = lower-case hex HMAC-SHA256(api_secret, string to sign)

sent with `X-BAPI-API-KEY`, `X-BAPI-TIMESTAMP` (UTC ms) and `X-BAPI-RECV-WINDOW`
(ms). The venue accepts the request only while
`server_time - recv_window <= timestamp < server_time + 1000`.

The signed string must be byte-identical to what is sent, so the query string
and the JSON body are built here once (`query_string`, `json_body`) and the
same text is both signed and sent. The docs print example signatures but not
the secret behind them, so there is no official vector: the unit tests pin
vectors computed with this algorithm (the doc's own payloads under the
derived secret of EXCHANGES-TRADING.md §1.3, and an order body of ours).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

import orjson

API_KEY_HEADER: Final = "X-BAPI-API-KEY"
TIMESTAMP_HEADER: Final = "X-BAPI-TIMESTAMP"
SIGN_HEADER: Final = "X-BAPI-SIGN"
RECV_WINDOW_HEADER: Final = "X-BAPI-RECV-WINDOW"

# create-order.mdx: orderLinkId is at most 36 letters, digits, dashes and underscores.
_ORDER_LINK_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,36}")


@dataclass(frozen=True, slots=True, repr=False)
class BybitCredentials:
    """A Bybit API key and its HMAC secret; never printed."""

    api_key: str
    api_secret: str

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("bybit credentials: the API key is empty")
        if not self.api_secret:
            raise ValueError("bybit credentials: the API secret is empty")

    def __repr__(self) -> str:
        return "BybitCredentials(<redacted>)"

    def values(self) -> tuple[str, ...]:
        """Return every secret string, for scrubbing text that might quote one."""
        return (self.api_key, self.api_secret)


def sign(secret: str, payload: str) -> str:
    """Return Bybit's signature of `payload`: lower-case hex HMAC-SHA256 under `secret`."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def string_to_sign(timestamp_ms: int, api_key: str, recv_window_ms: int, payload: str) -> str:
    """Return `timestamp + api_key + recv_window + payload` (payload: the query string or the JSON body)."""
    return f"{timestamp_ms}{api_key}{recv_window_ms}{payload}"


def signed_headers(
    credentials: BybitCredentials, timestamp_ms: int, recv_window_ms: int, payload: str
) -> dict[str, str]:
    """Return the four authentication headers of a request whose query string or body is `payload`."""
    text = string_to_sign(timestamp_ms, credentials.api_key, recv_window_ms, payload)
    return {
        API_KEY_HEADER: credentials.api_key,
        TIMESTAMP_HEADER: str(timestamp_ms),
        RECV_WINDOW_HEADER: str(recv_window_ms),
        SIGN_HEADER: sign(credentials.api_secret, text),
    }


def query_string(params: Mapping[str, str]) -> str:
    """Return the query string to sign and send: parameters sorted by name, values percent-encoded."""
    return "&".join(f"{name}={quote(str(value), safe='')}" for name, value in sorted(params.items()))


def json_body(params: Mapping[str, str]) -> str:
    """Return the compact JSON body to sign and send (keys in the given order)."""
    return orjson.dumps(dict(params)).decode()


def check_order_link_id(client_order_id: str) -> str:
    """Return `client_order_id` if Bybit accepts it as an orderLinkId, else raise ValueError."""
    if _ORDER_LINK_ID.fullmatch(client_order_id) is None:
        raise ValueError(
            f"invalid bybit orderLinkId {client_order_id!r}: at most 36 letters, digits, '-' or '_'"
        )
    return client_order_id
