"""What a Bybit v5 answer means for the daemon: one classification of HTTP statuses and retCodes.

Bybit answers most refusals with HTTP 200 and a non-zero `retCode`
(`docs/v5/error.mdx`, https://bybit-exchange.github.io/docs/v5/error; rate
limits: `docs/v5/rate-limit/rate-limit.mdx`). The table implemented here::

  answer                                 error                     the venue's words (why)
  -------------------------------------  ------------------------  -----------------------------------------
  HTTP 403                               VenueBanned (600 s)       "403, access too frequent": "wait for at
                                                                   least 10 minutes" (rate-limit.mdx)
  retCode 10009                          VenueBanned (600 s)       "IP has been banned."
  HTTP 429                               RateLimited (Retry-After  "System level frequency protection.
                                         or 1 s), IP-wide          Please retry when encounter this"
  retCode 10006                          RateLimited until         "Too many visits. Exceeded the API Rate
                                         X-Bapi-Limit-Reset-...    Limit." (per UID and endpoint)
  retCode 10018 (IP), 170005, 170222     RateLimited (1 s)         IP limit; "Too many new orders"; "Too
                                                                   many requests in this time frame."
  HTTP 5xx, timeout, dropped connection, OutcomeUnknown (orders)   nothing tells whether the order exists
    unreadable 2xx
  retCode 10000, 10016, 170007, 170146,  OutcomeUnknown (orders)   "Server Timeout"; "Server error" /
    170032                                                         "Service is restarting"; "Timeout waiting
                                                                   for response from backend server."; "Order
                                                                   creation timeout"; "Network error"
                                                                   (EXCHANGES-TRADING.md §1.4)
  retCode 170001, 170234, 170035         OutcomeUnknown (orders)   "Internal error."; "System Error";
                                                                   "Submitted to the system for processing!":
                                                                   none proves a refusal (our reading)
  retCode 10002                          ClockRejected             "The request time exceeds the time window
                                                                   range." An order is settled by query (§1.7)
  retCode 110072, 170141                 DuplicateOrder            "OrderLinkedID is duplicate" (UTA);
                                                                   "Duplicate clientOrderId" (spot)
  retCode 110001, 170213                 OrderNotFound             "Order does not exist"
  retCode 110008, 110010, 170139,        OrderNotFound (cancel)    the order is no longer open: completed,
    170142, 170190                                                 cancelled, filled, finished
  any other retCode                      VenueRejected             refused, e.g. balance (110004, 110007,
                                                                   110012, 170131), key or signature (10003,
                                                                   10004, 10005, 10010), order rules (170130
                                                                   to 170140, 110094), risk (170210)

On a request that executes nothing (a query, a balance) the "unknown" rows
are plain failures (`VenueConnectionError`): there is nothing to settle.
Messages are built from the code, the status and the venue's `retMsg` with
every secret removed; a header, a signature or a query string never enters one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from connectors.errors import (
    ClockRejected,
    DuplicateOrder,
    OrderAcknowledged,
    OrderNotFound,
    OutcomeUnknown,
    RateLimited,
    VenueBanned,
    VenueConnectionError,
    VenueError,
    VenueRejected,
)

VENUE: Final = "bybit"
BAN_S: Final = 600.0  # rate-limit.mdx: "wait for at least 10 minutes"
DEFAULT_BACKOFF_S: Final = 1.0  # the per-UID limits are per second

RATE_LIMIT_CODE: Final = 10006
IP_LIMIT_CODE: Final = 10018
CLOCK_CODE: Final = 10002
BANNED_CODES: Final = frozenset({10009})
THROTTLED_CODES: Final = frozenset({10018, 170005, 170222})
UNKNOWN_OUTCOME_CODES: Final = frozenset({10000, 10016, 170007, 170146, 170032, 170001, 170234, 170035})
DUPLICATE_CODES: Final = frozenset({110072, 170141})
NOT_FOUND_CODES: Final = frozenset({110001, 170213})
NOT_OPEN_CODES: Final = frozenset({110008, 110010, 170139, 170142, 170190})
_MAX_MESSAGE = 200


class BybitClockRejected(ClockRejected):
    """retCode 10002: the request's timestamp fell outside the recv window; `signed_ms` is the one sent."""

    def __init__(self, message: str, status: int, *, signed_ms: int) -> None:
        super().__init__(CLOCK_CODE, message, status, venue=VENUE)
        self.signed_ms = signed_ms


class AcknowledgedNotVisible(OrderAcknowledged):
    """Bybit acknowledged the order (`venue_order_id`) but no query shows it yet: it exists."""


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Return `text` cut to a sane length with every secret replaced by `<redacted>`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text[:_MAX_MESSAGE]


def http_error(status: int, action: str, *, may_execute: bool, retry_after_s: float | None) -> VenueError:
    """Map a non-2xx HTTP status (no usable retCode) while doing `action`."""
    if status == 403:
        return VenueBanned(
            f"bybit {action}: HTTP 403 (access too frequent); nothing is sent for {BAN_S:g} s", BAN_S
        )
    if status == 429:
        wait = DEFAULT_BACKOFF_S if retry_after_s is None else retry_after_s
        return RateLimited(f"bybit {action}: HTTP 429 (system frequency protection)", wait)
    if status >= 500 or status == 408:
        if may_execute:
            return OutcomeUnknown(f"bybit {action}: HTTP {status}; execution status unknown")
        return VenueConnectionError(f"bybit {action}: HTTP {status}")
    return VenueRejected(0, f"HTTP {status} without a Bybit answer", status, venue=VENUE)


def api_error(
    code: int,
    message: str,
    status: int,
    action: str,
    *,
    may_execute: bool,
    cancelling: bool = False,
    reset_in_s: float | None = None,
    signed_ms: int = 0,
) -> VenueError:
    """Map a non-zero retCode (with the venue's `retMsg`, already scrubbed) while doing `action`."""
    what = f"bybit {action}: retCode {code} ({message})"
    if code in BANNED_CODES:
        return VenueBanned(f"{what}; nothing is sent for {BAN_S:g} s", BAN_S)
    if code == RATE_LIMIT_CODE:
        wait = DEFAULT_BACKOFF_S if reset_in_s is None else reset_in_s
        return RateLimited(f"{what}; retry after {wait:.3f} s", wait)
    if code in THROTTLED_CODES:
        return RateLimited(f"{what}; retry after {DEFAULT_BACKOFF_S:g} s", DEFAULT_BACKOFF_S)
    if code in UNKNOWN_OUTCOME_CODES:
        if may_execute:
            return OutcomeUnknown(f"{what}; execution status unknown")
        return VenueConnectionError(what)
    if code == CLOCK_CODE:
        return BybitClockRejected(message, status, signed_ms=signed_ms)
    if code in DUPLICATE_CODES:
        return DuplicateOrder(code, message, status, venue=VENUE)
    if code in NOT_FOUND_CODES or (cancelling and code in NOT_OPEN_CODES):
        return OrderNotFound(code, message, status, venue=VENUE)
    return VenueRejected(code, message, status, venue=VENUE)
