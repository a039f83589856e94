"""Binance REST errors, and the one place python-binance and aiohttp errors become the project's.

The classes live in `connectors.errors` (every live venue shares them); this
module decides which one a Binance answer is:

    connectors.errors.VenueError
     ├── VenueRejected(code, message, status)   Binance answered and refused: nothing was executed
     │    ├── OrderNotFound                      -2013 / -2011: the venue has no such order
     │    ├── DuplicateOrder                     -2010 "Duplicate order sent.": that client id is open
     │    └── ClockRejected                      -1021: the timestamp fell outside recvWindow
     ├── OutcomeUnknown                          timeout, dropped connection, 5xx, -1006, -1007, a 2xx
     │                                           that cannot be read: the request may have executed
     ├── RateLimited(retry_after_s)              429, or the local limiter would have to wait too long
     ├── VenueBanned(until_s)                    418: the IP is banned; nothing is sent until `until_s`
     ├── OrderRuleViolation                      the order breaks the symbol's filters; it was not sent
     └── connectors.errors.VenueConnectionError
          └── VenueUnreachable                   no connection could be opened: nothing was sent

Every message is built here from fields known to be harmless. A foreign
error is chained (`raise ... from exc`) only when its own text carries no
secret: aiohttp errors can quote the request URL, which holds the signed
query string, and python-binance renders a non-JSON error body as the repr
of the response (URL included).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping

import aiohttp
from binance.exceptions import BinanceAPIException, BinanceRequestException

from connectors.errors import (
    ClockRejected,
    DuplicateOrder,
    OrderNotFound,
    OrderRuleViolation,
    OutcomeUnknown,
    RateLimited,
    VenueBanned,
    VenueError,
    VenueRejected,
    VenueUnreachable,
)
from connectors.rest import retry_after_s

__all__ = [
    "ClockRejected",
    "DuplicateOrder",
    "OrderNotFound",
    "OrderRuleViolation",
    "OutcomeUnknown",
    "RateLimited",
    "VenueBanned",
    "VenueRejected",
    "VenueUnreachable",
    "chain_is_clean",
    "from_api_error",
    "from_transport_error",
    "retry_after_s",
    "scrub",
]

# Error codes of binance-spot-api-docs errors.md that this module gives a meaning to.
TIMEOUT_CODE = -1007  # "Timeout waiting for response from backend server. ... execution status unknown."
UNKNOWN_RESPONSE_CODE = -1006  # "An unexpected response was received from the message bus."
TIMESTAMP_CODE = -1021
NEW_ORDER_REJECTED_CODE = -2010
CANCEL_REJECTED_CODE = -2011
NO_SUCH_ORDER_CODE = -2013
DUPLICATE_ORDER_MESSAGE = "Duplicate order sent."
DEFAULT_BAN_S = 120.0  # Binance's shortest automated ban, used when a 418 has no Retry-After

_SIGNED = re.compile(r"(signature|timestamp|recvWindow)=[^&\s'\"<>)]*", re.IGNORECASE)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` with signed query parameters and every given secret replaced by `<redacted>`."""
    text = _SIGNED.sub(lambda m: f"{m.group(1)}=<redacted>", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def chain_is_clean(exc: BaseException, secrets: Iterable[str] = ()) -> bool:
    """Tell whether `exc` and every error chained to it render without a signature or secret."""
    known = [s for s in secrets if s]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = f"{current!s} {current!r} {current.args!r}"
        if "signature" in text.lower() or any(s in text for s in known):
            return False
        if isinstance(current, BinanceAPIException) and current.code == 0:
            return False  # its message embeds repr(response), which holds the signed URL
        current = current.__cause__ or current.__context__
    return True


def from_api_error(exc: BinanceAPIException, secrets: Iterable[str] = ()) -> VenueError:
    """Map a non-2xx answer of Binance to the project's error tree."""
    status = int(exc.status_code)
    headers = _headers(exc)
    if status == 418:
        ban = retry_after_s(headers) or DEFAULT_BAN_S
        return VenueBanned(f"binance banned this IP for {ban:g} s (HTTP 418)", ban)
    if status == 429:
        wait = retry_after_s(headers) or 0.0
        return RateLimited(f"binance rate limit hit (HTTP 429); retry after {wait:g} s", wait)
    code = int(exc.code or 0)
    if code in (TIMEOUT_CODE, UNKNOWN_RESPONSE_CODE) or status >= 500 or (code == 0 and status == 408):
        detail = f"code {code}" if code else "no error code"
        return OutcomeUnknown(f"binance answered HTTP {status} ({detail}): execution status unknown")
    if code == 0:
        return VenueRejected(0, f"HTTP {status} without a JSON error body", status, venue="binance")
    message = scrub(str(exc.message or ""), secrets)
    if code in (NO_SUCH_ORDER_CODE, CANCEL_REJECTED_CODE):
        return OrderNotFound(code, message, status, venue="binance")
    if code == NEW_ORDER_REJECTED_CODE and message == DUPLICATE_ORDER_MESSAGE:
        return DuplicateOrder(code, message, status, venue="binance")
    if code == TIMESTAMP_CODE:
        return ClockRejected(code, message, status, venue="binance")
    return VenueRejected(code, message, status, venue="binance")


def from_transport_error(exc: BaseException, action: str) -> VenueError:
    """Map an aiohttp/asyncio/python-binance transport failure while doing `action`.

    Only a failure to open the connection proves nothing was sent; anything later
    (timeout, dropped connection, unreadable 2xx body) leaves the outcome unknown.
    """
    kind = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return VenueUnreachable(f"binance {action}: cannot connect ({kind}); nothing was sent")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return OutcomeUnknown(f"binance {action}: no answer in time ({kind}); execution status unknown")
    if isinstance(exc, BinanceRequestException | aiohttp.ContentTypeError):
        return OutcomeUnknown(f"binance {action}: unreadable 2xx answer ({kind}); execution status unknown")
    return OutcomeUnknown(f"binance {action}: connection failed ({kind}); execution status unknown")


TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    TimeoutError,
    BinanceRequestException,
)


def _headers(exc: BinanceAPIException) -> Mapping[str, str] | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers if isinstance(headers, Mapping) else None
