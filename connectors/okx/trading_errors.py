"""What an OKX v5 REST answer means: success, or which error of `connectors.errors` it is.

OKX answers most refusals with HTTP 200: a top-level `code` ("0" = success) and, on
the order endpoints, one `sCode`/`sMsg` per order inside `data` (top-level `code`
"1" when that order failed). Both are read; the per-order code wins when present.

Codes given a meaning here (https://www.okx.com/docs-v5/en/#error-code-rest-api-public,
stored copy 2026-07-20; rate limits: #overview-rate-limits; expTime: #overview-transaction-timeouts):

    OutcomeUnknown      unknown outcome, query it and never resend: 50004 (HTTP 400) "API endpoint
                        request timeout. (does not mean that the request was successful or failed,
                        please check the request result)", 50001 (503) service unavailable, 50013
                        (429) systems busy, 50026 (500) system error, any 5xx, an unreadable answer.
                        On an order only; a request that changes nothing raises VenueConnectionError.
    RateLimited         throttled, nothing executed, back off `backoff_s`: 50011 (429 or 200) rate
                        limit reached, 50061 (200) sub-account order rate, 50040 (200) too frequent
    VenueBanned         account blocked, nothing is sent for `ban_s`: 50007 (200) user blocked,
                        50029 (200) risk-control restriction, 50100 (400) API frozen
    ClockRejected       refused before processing, re-measure the clock: 50102 (401) timestamp
                        expired, 50112 (401) invalid timestamp, 50036 (200) expTime before server time
    OrderNotFound       51603 order does not exist; 51400 cancel failed as the order "has been filled,
                        canceled or does not exist"; 51401, 51402
    DuplicateOrder      the clOrdId is taken by a pending order: 51016 "Client order ID already
                        exists", 50071 "{param} already exists e.g. clOrdId already exists"
    VenueRejected       anything else, refused and nothing executed: e.g. 50113 invalid signature,
                        50105 wrong passphrase, 51008 insufficient balance, 51001 no such instrument,
                        50037 order expired (it reached the engine after its expTime)

OKX sends no rate-limit headers and documents no temporary ban; treating the three
account-block codes as a ban (nothing sent for a while, every request answered
"banned") is this module's decision, so the daemon never hammers a blocked account.
50001 and 50013 also hold requests back for one back-off period.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from connectors.errors import (
    ClockRejected,
    DuplicateOrder,
    OrderNotFound,
    OutcomeUnknown,
    RateLimited,
    VenueBanned,
    VenueConnectionError,
    VenueError,
    VenueRejected,
)
from connectors.rest import RestResponse

VENUE: Final = "okx"
UNKNOWN_OUTCOME_CODES: Final = frozenset({"50001", "50004", "50013", "50026"})
BUSY_CODES: Final = frozenset({"50001", "50013"})
THROTTLE_CODES: Final = frozenset({"50011", "50061", "50040"})
BAN_CODES: Final = frozenset({"50007", "50029", "50100"})
CLOCK_CODES: Final = frozenset({"50102", "50112", "50036"})
NOT_FOUND_CODES: Final = frozenset({"51603", "51400", "51401", "51402"})
DUPLICATE_CODES: Final = frozenset({"51016", "50071"})
_MESSAGE_CHARS: Final = 200


@dataclass(frozen=True, slots=True)
class Refusal:
    """A venue answer that is not a success: HTTP status, OKX code ("" if unreadable) and message."""

    status: int
    code: str
    message: str

    @property
    def busy(self) -> bool:
        """Tell whether the venue asked to be left alone for a moment (unavailable or busy)."""
        return self.code in BUSY_CODES or (self.code == "" and self.status == 429)


def read_answer(response: RestResponse, *, per_order: bool) -> tuple[Refusal | None, list[Any]]:
    """Return (None, data) for a success, or (the refusal, []) — never raises.

    `per_order`: the endpoint answers one `sCode` per order (place, cancel).
    """
    try:
        payload = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("code"), str):
        return Refusal(response.status, "", f"HTTP {response.status} without an OKX answer"), []
    code, data = payload["code"], payload.get("data")
    if not isinstance(data, list):
        data = []
    if per_order and data and isinstance(data[0], dict) and isinstance(data[0].get("sCode"), str):
        if data[0]["sCode"] != "0":
            return Refusal(response.status, data[0]["sCode"], _text(data[0].get("sMsg"))), []
        if code != "0":  # the order succeeded but the request did not: nothing to rely on
            return Refusal(response.status, code, _text(payload.get("msg"))), []
        return None, data
    if code != "0" or response.status >= 400:
        return Refusal(response.status, code, _text(payload.get("msg"))), []
    if per_order:  # success without the per-order result: cannot tell what happened
        return Refusal(response.status, "", "success answer without a per-order result"), []
    return None, data


def error_for(
    refusal: Refusal, action: str, *, may_execute: bool, now_s: float, backoff_s: float, ban_s: float
) -> VenueError:
    """Map a refusal to the project's error tree (see the table in the module docstring)."""
    code, status = refusal.code, refusal.status
    where = f"okx {action}"
    if code in THROTTLE_CODES or (code == "" and status == 429 and not may_execute):
        detail = f"code {code}" if code else "HTTP 429"
        return RateLimited(
            f"{where}: rate limited ({detail}); not executed, retry after {backoff_s:g} s", backoff_s
        )
    if code in UNKNOWN_OUTCOME_CODES or code == "" or status >= 500:
        detail = f"code {code}: {refusal.message}" if code else refusal.message
        if may_execute:
            return OutcomeUnknown(f"{where}: HTTP {status}, {detail}; execution status unknown")
        return VenueConnectionError(f"{where}: HTTP {status}, {detail}")
    if code in BAN_CODES:
        return VenueBanned(
            f"{where}: account blocked (code {code}: {refusal.message}); nothing is sent for {ban_s:g} s",
            now_s + ban_s,
        )
    kind: type[VenueRejected] = VenueRejected
    if code in CLOCK_CODES:
        kind = ClockRejected
    elif code in NOT_FOUND_CODES:
        kind = OrderNotFound
    elif code in DUPLICATE_CODES:
        kind = DuplicateOrder
    return kind(code, refusal.message, status, venue=VENUE)


def _text(value: object) -> str:
    text = value if isinstance(value, str) else ""
    return text[:_MESSAGE_CHARS]
