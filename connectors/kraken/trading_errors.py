"""What a Kraken spot REST answer means: every error string mapped onto `connectors.errors`.

Kraken answers HTTP 200 with a JSON envelope `{"error": [...], "result": {...}}`;
an error is a string `<E|W><Category>:<message>[:<extra>]` (warnings, `W...`,
are not errors). Sources: https://docs.kraken.com/api/docs/guides/spot-errors,
https://docs.kraken.com/api/docs/guides/spot-rest-ratelimits,
https://docs.kraken.com/api/docs/guides/spot-ratelimits, the support article
"API error messages" (360001491786), and the shared page §4.4.

| Kraken answer                                          | raised          | then                          |
|--------------------------------------------------------|-----------------|-------------------------------|
| `EService:Unavailable`, `EService:Busy`,               | OutcomeUnknown  | an order is settled by query, |
| `EGeneral:Internal error[:…]`, HTTP 5xx (Cloudflare    | (VenueRejected  | never re-sent                 |
| 52x), timeout, dropped connection, unreadable answer   | on a read)      |                               |
| `EService:Deadline elapsed`                            | VenueRejected   | definite: not executed        |
| `EAPI:Rate limit exceeded` (REST call counter)         | RateLimited     | nothing sent until the        |
|                                                        |                 | counter has fully decayed     |
| `EOrder:Rate limit exceeded` (trading counter, a pair) | RateLimited     | no order on that pair until   |
|                                                        |                 | its counter has decayed       |
| `EService: Throttled: [UNIX ts]` (too many at once)    | RateLimited     | nothing sent before `ts`      |
| HTTP 429 (Cloudflare)                                  | RateLimited     | nothing before Retry-After    |
| `EGeneral:Temporary lockout` ("about 15 minutes")      | VenueBanned     | nothing sent for 15 min       |
| `EAPI:Invalid nonce`                                   | ClockRejected   | refused before execution      |
| `EOrder:Unknown order`                                 | OrderNotFound   |                               |
| `EOrder:Duplicate…` (NOT documented; see below)        | DuplicateOrder  | settled by query              |
| `EAPI:Invalid key`, `EAPI:Invalid signature`,          | VenueRejected   | definite: not executed        |
| `EGeneral:Permission denied`, `EOrder:Insufficient     |                 |                               |
| funds`, `EOrder:Order minimum not met`,                |                 |                               |
| `EGeneral:Invalid arguments…`, `EQuery:Unknown asset   |                 |                               |
| pair`, any other `E…`                                  |                 |                               |

Not confirmed by the docs: the string Kraken sends for a `cl_ord_id` already
taken by an open order (none is documented; any `EOrder:Duplicate…` is taken
as that), and how long `EAPI:Rate limit exceeded` really holds (the counter
model says until it decays; the support article advises waiting longer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from connectors.errors import (
    ClockRejected,
    DuplicateOrder,
    OrderNotFound,
    OutcomeUnknown,
    RateLimited,
    VenueBanned,
    VenueError,
    VenueRejected,
)

VENUE: Final = "kraken"
UNKNOWN_OUTCOME: Final = ("EService:Unavailable", "EService:Busy", "EGeneral:Internal error")
REST_RATE_LIMIT: Final = "EAPI:Rate limit exceeded"
ORDER_RATE_LIMIT: Final = "EOrder:Rate limit exceeded"
LOCKOUT: Final = "EGeneral:Temporary lockout"
INVALID_NONCE: Final = "EAPI:Invalid nonce"
UNKNOWN_ORDER: Final = "EOrder:Unknown order"
DUPLICATE_PREFIX: Final = "EOrder:Duplicate"
DEADLINE_ELAPSED: Final = "EService:Deadline elapsed"
LOCKOUT_S: Final = 900.0  # "Temporary lockouts typically last approximately 15 minutes" (support article)
_THROTTLED: Final = re.compile(r"^EService:\s*Throttled:\s*\[?\s*(\d+(?:\.\d+)?)\s*\]?")
_MAX_TEXT: Final = 200


@dataclass(frozen=True, slots=True)
class Refusal:
    """What an answer means, and how long the client must hold back because of it."""

    error: VenueError
    hold_all_s: float | None = None  # send nothing at all for this long
    hold_pair_s: float | None = None  # send no order on this pair for this long
    ban_s: float | None = None  # the venue locked this key out: refuse everything, unsent


def errors_of(payload: object) -> list[str]:
    """Return the `E…` errors of a decoded envelope (warnings dropped); [] when there are none."""
    if not isinstance(payload, dict):
        return []
    found = payload.get("error")
    if not isinstance(found, list):
        return []
    return [str(e)[:_MAX_TEXT] for e in found if isinstance(e, str) and e.startswith("E")]


def classify(
    errors: list[str],
    *,
    action: str,
    may_execute: bool,
    status: int,
    now_s: float,
    rest_decay_s: float,
    order_decay_s: float,
) -> Refusal:
    """Map Kraken's error strings (at least one) onto the error tree, with any hold they impose.

    `now_s` is the venue's UNIX time (for `Throttled:[ts]`); `rest_decay_s` and
    `order_decay_s` are how long the REST and per-pair trading counters take to
    decay from full to zero at this account's tier.
    """
    text = "; ".join(errors)
    for error in errors:
        if error.startswith(UNKNOWN_OUTCOME):
            return Refusal(unknown(action, f"Kraken answered {error}", may_execute=may_execute, code=error))
        throttled = _THROTTLED.match(error)
        if throttled:
            # Whole seconds: the time to wait for may have been rounded down by up to one.
            wait = max(1.0, float(throttled.group(1)) + 1 - now_s)
            return Refusal(_limited(action, error, wait), hold_all_s=wait)
        if error.startswith(REST_RATE_LIMIT):
            return Refusal(_limited(action, error, rest_decay_s), hold_all_s=rest_decay_s)
        if error.startswith(ORDER_RATE_LIMIT):
            return Refusal(_limited(action, error, order_decay_s), hold_pair_s=order_decay_s)
        if error.startswith(LOCKOUT):
            message = f"kraken {action}: {error}: this key is locked out for {LOCKOUT_S:g} s; not sent"
            return Refusal(VenueBanned(message, LOCKOUT_S), ban_s=LOCKOUT_S)
    first = errors[0]
    if any(e.startswith(INVALID_NONCE) for e in errors):
        return Refusal(ClockRejected(INVALID_NONCE, text, status, venue=VENUE))
    if any(e.startswith(UNKNOWN_ORDER) for e in errors):
        return Refusal(OrderNotFound(UNKNOWN_ORDER, text, status, venue=VENUE))
    if any(e.startswith(DUPLICATE_PREFIX) for e in errors):
        return Refusal(DuplicateOrder(first, text, status, venue=VENUE))
    return Refusal(VenueRejected(first, text, status, venue=VENUE))


def unknown(action: str, what: str, *, may_execute: bool, code: str = "") -> VenueError:
    """Return OutcomeUnknown for an order, or a plain refusal for a request that changes nothing."""
    if may_execute:
        return OutcomeUnknown(f"kraken {action}: {what}; execution status unknown")
    return VenueRejected(code or "unavailable", what, 0, venue=VENUE)


def from_http_status(
    status: int, retry_after: float | None, *, action: str, may_execute: bool
) -> Refusal | None:
    """Map a non-200 answer without a Kraken envelope (Cloudflare, proxies); None if it has one to read."""
    if status == 429:
        wait = retry_after if retry_after is not None else 1.0
        return Refusal(_limited(action, "HTTP 429", wait), hold_all_s=wait)
    if status >= 500:
        return Refusal(unknown(action, f"HTTP {status}", may_execute=may_execute, code=f"HTTP {status}"))
    return None


def _limited(action: str, error: str, wait_s: float) -> RateLimited:
    return RateLimited(f"kraken {action}: {error}; nothing sent for {wait_s:.3g} s", wait_s)
