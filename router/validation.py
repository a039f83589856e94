"""Check order requests from `smartroute.orders` before anything reaches an executor.

`parse_request` is pure: message bytes in, an `OrderRequest` or an
`ArbitrageRequest` out, or
`InvalidRequest` with the contract's `reject_code` and a sentence that names the
field and echoes (at most ~40 characters of) the offending value. Checks run in
a fixed order, so one message always gets the same verdict:

1. size (at most 64 KiB, before any parsing), UTF-8, JSON without duplicate
   keys or NaN/Infinity, and a JSON object;
2. `v`, first among fields, since another version may have another shape;
3. unknown fields, then fields that do not apply to the request's kind;
4. each field's type and form → `invalid_request`;
5. symbol and venues against the enabled set → `unknown_symbol`, `unknown_venue`;
6. `deadline_ns` against `now_ns` → `deadline_exceeded`.

The exception carries `request_id`, `user_id` and `kind` only where each is
present and well-formed, exactly as `peek_identity` reads them, so a rejected
result is never keyed by a malformed id.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Final, TypedDict, TypeVar, cast

from connectors.types import BPS, Side
from router.errors import InvalidRequest
from router.request import (
    ArbitrageRequest,
    Kind,
    OrderRequest,
    OrderType,
    Request,
    RequestRules,
    plain_decimal,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ArbitrageRequest",
    "OrderRequest",
    "Request",
    "RequestRules",
    "parse_request",
    "peek_identity",
]

MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_LIMIT_PRICE: Final = Decimal("1e12")
MAX_SLIPPAGE_BPS: Final = BPS
# Results and other consumers carry deadline_ns as a signed 64-bit integer.
MAX_DEADLINE_NS: Final = 2**63 - 1

FIELDS: Final = frozenset(
    {
        "v", "request_id", "user_id", "kind", "symbol", "side", "quantity", "order_type",
        "limit_price", "max_slippage_bps", "venues", "buy_venue", "sell_venue",
        "opportunity_id", "deadline_ns",
    }
)  # fmt: skip
_NOT_FOR: Final[dict[str, frozenset[str]]] = {
    "order": frozenset({"buy_venue", "sell_venue", "opportunity_id"}),
    # An arbitrage names both of its venues and executes both legs at market.
    "arbitrage": frozenset({"side", "limit_price", "venues"}),
}
_KINDS: Final = ("order", "arbitrage")

_ID_CHARS: Final = "[A-Za-z0-9._:-]"
_USER_CHARS: Final = "[A-Za-z0-9._:@-]"
_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_USER_ID: Final = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
_SYMBOL: Final = re.compile(r"[A-Z0-9]{2,20}-[A-Z0-9]{2,20}")
_DECIMAL: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_ECHO_CHARS: Final = 40
_LISTED_NAMES: Final = 5

_T = TypeVar("_T", bound=str)
_V = TypeVar("_V")


def parse_request(raw: bytes | None, rules: RequestRules, *, now_ns: int) -> Request:
    """Decode and check one Kafka message value; raise InvalidRequest on any defect.

    `raw` may be None (a Kafka record without a value); that is rejected too.
    """
    try:
        document = _decode(raw)
    except ValueError as exc:
        raise InvalidRequest("invalid_request", str(exc)) from None
    if not isinstance(document, dict):
        raise InvalidRequest("invalid_request", f"message must be a JSON object, got {_show(document)}")
    request_id, user_id, kind = _identity(document)
    try:
        return _check(document, rules, now_ns)
    except InvalidRequest as exc:
        raise InvalidRequest(
            exc.reject_code, exc.message, request_id=request_id, user_id=user_id, kind=kind
        ) from None


def peek_identity(raw: bytes | None) -> tuple[str | None, str | None, str | None]:
    """Read (request_id, user_id, kind) from a message that failed validation, each only if well-formed.

    Best effort: it never raises, and gives None for whatever is absent,
    malformed, or unreadable (not JSON, not an object, over the size limit).
    """
    try:
        document = _decode(raw)
    except ValueError:
        return None, None, None
    if not isinstance(document, dict):
        return None, None, None
    return _identity(document)


def _decode(raw: bytes | None) -> object:
    """Return the JSON document in `raw`; raise ValueError saying why there is none."""
    if raw is None:
        raise ValueError("message has no value")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message is {len(raw)} bytes, over the limit of {MAX_MESSAGE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"message is not UTF-8: invalid byte at offset {exc.start}") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"message is not valid JSON: {exc.msg} at offset {exc.pos}") from None
    except RecursionError:
        raise ValueError("message is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"message is not valid JSON: {exc}") from None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Parsers disagree on which duplicate wins; a request must mean one thing to every reader.
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {_show(key)}")
            seen.add(key)
    return document


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def _identity(document: dict[str, object]) -> tuple[str | None, str | None, str | None]:
    request_id = document.get("request_id")
    user_id = document.get("user_id")
    kind = document.get("kind")
    return (
        request_id if isinstance(request_id, str) and _ID.fullmatch(request_id) else None,
        user_id if isinstance(user_id, str) and _USER_ID.fullmatch(user_id) else None,
        kind if isinstance(kind, str) and kind in _KINDS else None,
    )


class _Common(TypedDict):
    """The fields both kinds of request have, once checked."""

    request_id: str
    user_id: str
    symbol: str
    quantity: Decimal
    max_slippage_bps: Decimal | None
    deadline_ns: int | None


def _check(document: dict[str, object], rules: RequestRules, now_ns: int) -> Request:
    _check_version(document)
    _check_field_names(document)
    request_id = _required_id(document, "request_id", _ID, _ID_CHARS)
    user_id = _required_id(document, "user_id", _USER_ID, _USER_CHARS)
    kind = cast(Kind, _choice(document, "kind", _KINDS, required=True))
    _check_applicable(document, kind)
    symbol = _symbol(document)
    quantity = _decimal(document, "quantity", rules, positive=True, maximum=rules.max_quantity)
    common = _Common(
        request_id=request_id,
        user_id=user_id,
        symbol=symbol,
        quantity=_required(quantity, "quantity"),
        max_slippage_bps=_decimal(
            document, "max_slippage_bps", rules, positive=False, maximum=MAX_SLIPPAGE_BPS
        ),
        deadline_ns=_deadline(document),
    )
    request: Request = _order(common, document, rules) if kind == "order" else _arbitrage(common, document)
    _check_known(request, rules)
    if request.deadline_ns is not None and request.deadline_ns <= now_ns:
        raise InvalidRequest(
            "deadline_exceeded",
            f"deadline_ns {request.deadline_ns} has passed (now {now_ns}); the request was not started",
        )
    return request


def _check_version(document: dict[str, object]) -> None:
    if "v" not in document:
        raise _invalid("v is required and must be the integer 1")
    version = document["v"]
    if type(version) is int and version != 1:
        raise InvalidRequest(
            "unsupported_version", f"v must be 1 (the only version this router reads), got {_show(version)}"
        )
    if type(version) is not int:
        raise _invalid(f"v must be the integer 1, got {_show(version)}")


def _check_field_names(document: dict[str, object]) -> None:
    unknown = sorted(document.keys() - FIELDS)
    if unknown:
        raise _invalid(f"unknown field {_names(unknown)}: requests accept only {', '.join(sorted(FIELDS))}")


def _check_applicable(document: dict[str, object], kind: str) -> None:
    misplaced = sorted(document.keys() & _NOT_FOR[kind])
    if misplaced:
        raise _invalid(f"field {_names(misplaced)} does not apply to kind {_show(kind)}")


def _order(common: _Common, document: dict[str, object], rules: RequestRules) -> OrderRequest:
    side = cast(Side, _choice(document, "side", ("buy", "sell"), required=True))
    order_type = cast(OrderType, _choice(document, "order_type", ("market", "limit")) or "market")
    limit_price = _decimal(document, "limit_price", rules, positive=True, maximum=MAX_LIMIT_PRICE)
    if order_type == "limit" and limit_price is None:
        raise _invalid('limit_price is required when order_type is "limit"')
    if order_type == "market" and limit_price is not None:
        raise _invalid('limit_price applies only to order_type "limit", and this order is "market"')
    venues = _venue_list(document)
    return OrderRequest(**common, side=side, order_type=order_type, limit_price=limit_price, venues=venues)


def _arbitrage(common: _Common, document: dict[str, object]) -> ArbitrageRequest:
    if _choice(document, "order_type", ("market", "limit")) == "limit":
        raise _invalid('order_type must be "market" for kind "arbitrage": both legs execute at market')
    buy_venue = _required(_venue(document, "buy_venue"), "buy_venue")
    sell_venue = _required(_venue(document, "sell_venue"), "sell_venue")
    if buy_venue == sell_venue:
        raise _invalid(f"buy_venue and sell_venue must differ, both are {_show(buy_venue)}")
    opportunity_id = document.get("opportunity_id")
    if "opportunity_id" in document and (
        not isinstance(opportunity_id, str) or _ID.fullmatch(opportunity_id) is None
    ):
        raise _invalid(f"opportunity_id must be 1..64 characters of {_ID_CHARS}, got {_show(opportunity_id)}")
    opportunity = cast("str | None", opportunity_id)
    return ArbitrageRequest(**common, buy_venue=buy_venue, sell_venue=sell_venue, opportunity_id=opportunity)


def _check_known(request: Request, rules: RequestRules) -> None:
    if request.symbol not in rules.symbols:
        raise InvalidRequest(
            "unknown_symbol", f"symbol {_show(request.symbol)} is not traded on any enabled venue"
        )
    named: list[tuple[str, str]]
    if isinstance(request, OrderRequest):
        named = [("venues", venue) for venue in request.venues or ()]
    else:
        named = [("buy_venue", request.buy_venue), ("sell_venue", request.sell_venue)]
    for field, venue in named:
        if venue not in rules.venues:
            enabled = ", ".join(sorted(rules.venues)) or "none"
            raise InvalidRequest(
                "unknown_venue",
                f"{field} names {_show(venue)}, which is not an enabled venue (enabled: {enabled})",
            )


def _required_id(document: dict[str, object], name: str, pattern: re.Pattern[str], chars: str) -> str:
    value = _present(document, name)
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise _invalid(f"{name} must be 1..64 characters of {chars}, got {_show(value)}")
    return value


def _choice(
    document: dict[str, object], name: str, allowed: tuple[_T, ...], *, required: bool = False
) -> _T | None:
    if name not in document and not required:
        return None
    value = _present(document, name)
    for choice in allowed:
        if value == choice:
            return choice
    raise _invalid(f"{name} must be {' or '.join(_show(choice) for choice in allowed)}, got {_show(value)}")


def _symbol(document: dict[str, object]) -> str:
    value = _present(document, "symbol")
    if not isinstance(value, str) or _SYMBOL.fullmatch(value) is None:
        raise _invalid(
            f'symbol must be canonical BASE-QUOTE in upper case (e.g. "BTC-USDT"), got {_show(value)}'
        )
    return value


def _decimal(
    document: dict[str, object], name: str, rules: RequestRules, *, positive: bool, maximum: Decimal
) -> Decimal | None:
    if name not in document:
        return None
    value = document[name]
    wanted = f"{name} must be a {'positive' if positive else 'non-negative'} decimal string"
    if not isinstance(value, str):
        hint = "; send decimals as JSON strings" if type(value) in (int, float) else ""
        raise _invalid(f"{wanted}, got {_show(value)}{hint}")
    if len(value) > rules.max_decimal_chars:
        raise _invalid(f"{wanted} of at most {rules.max_decimal_chars} characters, got {_show(value)}")
    if _DECIMAL.fullmatch(value) is None:
        raise _invalid(f'{wanted} (digits with an optional fraction, e.g. "0.25"), got {_show(value)}')
    number = Decimal(value)
    if positive and number == 0:
        raise _invalid(f"{wanted}, got {_show(value)}")
    if number > maximum:
        raise _invalid(f"{name} must be at most {plain_decimal(maximum)}, got {_show(value)}")
    return number


def _venue(document: dict[str, object], name: str) -> str | None:
    value = document.get(name)
    if name in document and not isinstance(value, str):
        raise _invalid(f"{name} must be a venue id string, got {_show(value)}")
    return value if isinstance(value, str) else None


def _venue_list(document: dict[str, object]) -> tuple[str, ...] | None:
    if "venues" not in document:
        return None
    value = document["venues"]
    if not isinstance(value, list) or not value:
        raise _invalid(f"venues must be a non-empty array of venue ids, got {_show(value)}")
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise _invalid(f"venues must hold venue id strings only, got {_show(item)}")
        if item in seen:
            raise _invalid(f"venues must not repeat a venue, got {_show(item)} twice")
        seen.add(item)
    return tuple(cast("list[str]", value))


def _deadline(document: dict[str, object]) -> int | None:
    if "deadline_ns" not in document:
        return None
    value = document["deadline_ns"]
    if type(value) is not int or not 0 < value <= MAX_DEADLINE_NS:
        raise _invalid(
            f"deadline_ns must be an integer of nanoseconds since the epoch in 1..{MAX_DEADLINE_NS}, "
            f"got {_show(value)}"
        )
    return value


def _present(document: dict[str, object], name: str) -> object:
    if name not in document:
        raise _invalid(f"{name} is required")
    return document[name]


def _required(value: _V | None, name: str) -> _V:
    if value is None:
        raise _invalid(f"{name} is required")
    return value


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest("invalid_request", message)


def _names(names: list[str]) -> str:
    shown = ", ".join(_show(name) for name in names[:_LISTED_NAMES])
    more = len(names) - _LISTED_NAMES
    return f"{shown} (and {more} more)" if more > 0 else shown


def _show(value: object) -> str:
    """Render a decoded JSON value for a message: JSON syntax, ASCII only, about 40 characters at most."""
    if isinstance(value, str):
        shown = json.dumps(value[:_ECHO_CHARS])
        return shown if len(value) <= _ECHO_CHARS else f'{shown[:-1]}..." ({len(value)} characters)'
    if isinstance(value, list):
        return f"an array of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return "an object"
    text = json.dumps(value)
    if isinstance(value, bool) or value is None:
        return text
    text = text if len(text) <= _ECHO_CHARS else f"{text[:_ECHO_CHARS]}... ({len(text)} characters)"
    return f"the number {text}"
