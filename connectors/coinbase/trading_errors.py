"""What a Coinbase Advanced Trade answer means, in the project's error tree (`connectors.errors`).

    Coinbase answer                                                raised            executed?
    -------------------------------------------------------------  ----------------  ---------
    transport: no connection opened                                VenueUnreachable  no
    transport: timeout / dropped connection after sending an order OutcomeUnknown    unknown
    HTTP 5xx to an order (any body)                                OutcomeUnknown    unknown
    HTTP 2xx to an order that is not readable JSON                 OutcomeUnknown    unknown
    HTTP 200 `success: false`, `UNKNOWN_FAILURE_REASON`            OutcomeUnknown(*) unknown
    HTTP 200 `success: false`, any other failure reason            VenueRejected     no
      (`INSUFFICIENT_FUND`, `INVALID_SIZE_PRECISION`, `INVALID_PRICE_PRECISION`,
       `INVALID_LIMIT_PRICE`, `INVALID_PRODUCT_ID`, `UNSUPPORTED_ORDER_CONFIGURATION`,
       `ORDER_ENTRY_DISABLED`, `PREVIEW_*`, ...)
    HTTP 429 (`rate_limit_exceeded`)                               RateLimited       no
    HTTP 401, JWT refused, the re-measured clock had moved         ClockRejected     no
    HTTP 401, JWT refused (bad key, bad signature, expired)        VenueRejected     no
    HTTP 403 (key lacks a scope, IP not allowed)                   VenueRejected     no
    HTTP 404 / `NOT_FOUND` on get-order; no match listing orders   OrderNotFound     no such order (yet)
    HTTP 400 `INVALID_ARGUMENT`, other 4xx with an `error` body    VenueRejected     no
    a repeated `client_order_id`                                   (the existing order is returned, once)

(*) The documented meaning of `success: false` is "the order was not created";
`UNKNOWN_FAILURE_REASON` is treated as unknown all the same: settling it costs one
query, believing a wrong "no" could leave an executed order unrecorded.

Sources (EXCHANGES-TRADING.md §3.1, §3.4): the create-order response
(`success`, `failure_reason`, `error_response{error, message, error_details,
new_order_failure_reason, preview_failure_reason}`), the unclear-result rule
"HTTP 5xx / timeout / dropped connection", the `x-ratelimit-*` headers and 429,
the get-order "order with this orderID was not found" answer. Coinbase documents
no IP ban for Advanced Trade (unlike Binance's 418 or Bybit's 403): nothing here
maps to VenueBanned; a 429 backs the client off for its Retry-After (1 s when
absent) and `x-ratelimit-remaining: 0` holds requests until `x-ratelimit-reset`.

Messages are built from the venue's error code and message only, scrubbed of
every credential string and of anything shaped like a JWT.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from connectors.errors import (
    ClockRejected,
    OrderNotFound,
    OutcomeUnknown,
    RateLimited,
    VenueError,
    VenueRejected,
)
from connectors.rest import retry_after_s

VENUE: Final = "coinbase"
UNKNOWN_FAILURE: Final = "UNKNOWN_FAILURE_REASON"
DEFAULT_RETRY_AFTER_S: Final = 1.0
# `x-ratelimit-reset` above this is an epoch time in seconds; below it, seconds until the reset.
_EPOCH_THRESHOLD_S: Final = 1_000_000_000

_JWT: Final = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_BEARER: Final = re.compile(r"bearer\s+\S+", re.IGNORECASE)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` without any credential string, bearer token or JWT-shaped value."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return _JWT.sub("<redacted>", _BEARER.sub("Bearer <redacted>", text))[:300]


def decode_body(body: bytes) -> Any:
    """Return the JSON value of `body`, or None when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def error_fields(payload: Any) -> tuple[str, str]:
    """Return (code, message) of a Coinbase error body (`{"error", "message", "error_details"}`)."""
    if not isinstance(payload, Mapping):
        return "", ""
    code = payload.get("error") or payload.get("code") or ""
    message = payload.get("message") or payload.get("error_details") or ""
    return str(code), str(message)


def http_error(
    status: int, body: bytes, *, action: str, may_execute: bool, secrets: Iterable[str] = ()
) -> VenueError:
    """Map a non-2xx answer (other than 429 and 401, handled by the caller) to the error tree."""
    code, message = error_fields(decode_body(body))
    message = scrub(message, secrets)
    if status >= 500:
        detail = f"HTTP {status}" + (f" ({code})" if code else "")
        if may_execute:
            return OutcomeUnknown(f"{VENUE} {action}: {detail}; execution status unknown")
        return VenueError(f"{VENUE} {action}: {detail}; try again")
    if status == 404 or code.upper() == "NOT_FOUND" or "not found" in message.lower():
        return OrderNotFound(code or "NOT_FOUND", message or "not found", status, venue=VENUE)
    return VenueRejected(code or f"HTTP_{status}", message or f"{action} refused", status, venue=VENUE)


def unauthorized(body: bytes, *, clock_moved: bool, secrets: Iterable[str] = ()) -> VenueRejected:
    """Map a 401: a refusal before anything ran; a clock error when the re-measured offset moved."""
    code, message = error_fields(decode_body(body))
    text = scrub(message or body.decode("utf-8", "replace").strip() or "Unauthorized", secrets)
    if clock_moved:
        return ClockRejected(
            code or "UNAUTHORIZED", f"JWT refused after a clock jump: {text}", 401, venue=VENUE
        )
    return VenueRejected(
        code or "UNAUTHORIZED", f"JWT refused (key, signature or time): {text}", 401, venue=VENUE
    )


def create_failure(
    payload: Mapping[str, Any], client_order_id: str, secrets: Iterable[str] = ()
) -> VenueError:
    """Map a create-order answer with `success: false`."""
    failure = payload.get("error_response")
    failure = failure if isinstance(failure, Mapping) else {}
    reason = str(
        failure.get("new_order_failure_reason")
        or failure.get("preview_failure_reason")
        or failure.get("error")
        or payload.get("failure_reason")
        or UNKNOWN_FAILURE
    )
    message = scrub(str(failure.get("message") or failure.get("error_details") or reason), secrets)
    if reason in (UNKNOWN_FAILURE, "UNKNOWN_FAILURE"):
        return OutcomeUnknown(
            f"{VENUE} order {client_order_id} answered {reason}: execution status unknown; query it"
        )
    return VenueRejected(reason, message, 200, venue=VENUE)


def rate_limited(headers: Mapping[str, str]) -> RateLimited:
    """Return the RateLimited error of a 429, with its Retry-After (1 s when absent)."""
    wait = retry_after(headers)
    return RateLimited(f"{VENUE} rate limit hit (HTTP 429); retry after {wait:g} s; not executed", wait)


def retry_after(headers: Mapping[str, str]) -> float:
    """Return the Retry-After of a 429 in seconds (1 s when absent or not a number)."""
    seconds = retry_after_s(headers)
    return DEFAULT_RETRY_AFTER_S if seconds is None else seconds


def rate_limit_state(headers: Mapping[str, str], venue_now_s: float) -> tuple[int | None, float | None]:
    """Return (remaining, seconds until the reset) from `x-ratelimit-remaining` / `-reset`.

    The unit of `x-ratelimit-reset` is not documented: an epoch time (seconds) is
    read against the venue's clock, a small number as seconds from now.
    """
    try:
        remaining = int(headers["x-ratelimit-remaining"])
    except (KeyError, ValueError):
        remaining = None
    try:
        reset = float(headers["x-ratelimit-reset"])
    except (KeyError, ValueError):
        return remaining, None
    return remaining, max(0.0, reset - venue_now_s if reset > _EPOCH_THRESHOLD_S else reset)


def accepted_order_id(answer: Any, client_order_id: str, secrets: Iterable[str] = ()) -> str:
    """Return the order id of a create-order answer; raise what a refusal or an unreadable one means."""
    if not isinstance(answer, Mapping) or not isinstance(answer.get("success"), bool):
        raise OutcomeUnknown(f"coinbase order {client_order_id}: an answer without 'success'; status unknown")
    if answer["success"] is not True:
        raise create_failure(answer, client_order_id, secrets)
    success = answer.get("success_response")
    order_id = (success.get("order_id") if isinstance(success, Mapping) else None) or answer.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        raise OutcomeUnknown(f"coinbase order {client_order_id}: accepted without an order id; query it")
    return order_id
