"""A user's routing preferences: from `[users.<id>]`, the compacted preferences topic, or defaults.

Per user, the latest topic message wins over the config file, which wins over
`default_preferences`. A message is the user's whole preference set, not a
patch: fields it omits take their defaults, never the config's values, so the
compacted topic alone says what is in force. A tombstone (null value) removes
the topic's word for that user, and the config (or the defaults) apply again.

`risk_tolerance` picks a `RiskProfile`; an explicit `max_slippage_bps`,
`max_order_notional` or `max_venues` overrides that part of the profile.
Everything here is pure except `PreferenceStore`, which holds the overrides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Final, TypeVar

import orjson
import structlog

from connectors.types import BPS, VENUE_IDS, RiskTolerance, Strategy, decimal_text
from router.errors import RouterError

__all__ = [
    "FIELDS",
    "RISK_PROFILES",
    "InvalidPreferences",
    "PreferenceStore",
    "RiskProfile",
    "UserPreferences",
    "default_preferences",
    "preferences_from_fields",
]

RISK_TOLERANCES: Final[tuple[RiskTolerance, ...]] = ("low", "medium", "high")
STRATEGIES: Final[tuple[Strategy, ...]] = ("best_price", "preferred", "fastest", "split")

# max_venues is not in the contract's message, but as_message() writes it, so it is read back.
FIELDS: Final = frozenset(
    {
        "preferred_venues", "excluded_venues", "preferred_bias_bps", "risk_tolerance",
        "max_slippage_bps", "max_order_notional", "max_venues", "strategy",
    }
)  # fmt: skip
MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_BPS: Final = BPS
MAX_NOTIONAL: Final = Decimal("1e15")
_USER_ID: Final = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
_DECIMAL: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_MAX_DECIMAL_CHARS: Final = 40
_ECHO_CHARS: Final = 40

_T = TypeVar("_T", bound=str)

log = structlog.get_logger(__name__)


class InvalidPreferences(RouterError):
    """Preferences that cannot be used; `field` names the offending field, `str(exc)` says why."""

    def __init__(self, field: str, message: str, *, user_id: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.user_id = user_id


@dataclass(frozen=True, slots=True)
class RiskProfile:
    """What a risk tolerance allows: slippage in bps, venues per order, order notional in quote currency.

    Slippage is measured on the chosen venue's own book (VWAP against that book's
    best price, `router.routing`), so a preferred venue quoting above the best
    venue is never excluded by this limit for that alone.
    """

    max_slippage_bps: Decimal
    max_venues: int
    max_order_notional: Decimal


RISK_PROFILES: Final[Mapping[RiskTolerance, RiskProfile]] = MappingProxyType(
    {
        "low": RiskProfile(Decimal(10), 1, Decimal(10_000)),
        "medium": RiskProfile(Decimal(25), 2, Decimal(100_000)),
        "high": RiskProfile(Decimal(100), 5, Decimal(1_000_000)),
    }
)


@dataclass(frozen=True, slots=True)
class UserPreferences:
    """One user's effective preferences: profile values already resolved, venue names checked."""

    user_id: str
    preferred_venues: tuple[str, ...]
    excluded_venues: frozenset[str]
    preferred_bias_bps: Decimal
    risk_tolerance: RiskTolerance
    max_slippage_bps: Decimal
    max_order_notional: Decimal
    max_venues: int
    strategy: Strategy

    def as_message(self) -> dict[str, object]:
        """Return the contract's Preferences message (plus max_venues): `"v": 1`, decimals as strings."""
        return {
            "v": 1,
            "user_id": self.user_id,
            "preferred_venues": list(self.preferred_venues),
            "excluded_venues": sorted(self.excluded_venues),
            "preferred_bias_bps": decimal_text(self.preferred_bias_bps),
            "risk_tolerance": self.risk_tolerance,
            "max_slippage_bps": decimal_text(self.max_slippage_bps),
            "max_order_notional": decimal_text(self.max_order_notional),
            "max_venues": self.max_venues,
            "strategy": self.strategy,
        }


def default_preferences(user_id: str) -> UserPreferences:
    """Return the preferences of a user nobody configured: medium risk, best price, no venue lists."""
    _check_user_id(user_id)
    profile = RISK_PROFILES["medium"]
    return UserPreferences(
        user_id=user_id,
        preferred_venues=(),
        excluded_venues=frozenset(),
        preferred_bias_bps=Decimal(0),
        risk_tolerance="medium",
        max_slippage_bps=profile.max_slippage_bps,
        max_order_notional=profile.max_order_notional,
        max_venues=profile.max_venues,
        strategy="best_price",
    )


def preferences_from_fields(
    user_id: str, fields: Mapping[str, object], *, known_venues: Iterable[str]
) -> UserPreferences:
    """Build a user's preferences from `[users.<id>]` or message fields; raise InvalidPreferences.

    Decimals may be Decimal, int or a decimal string. `max_slippage_bps`,
    `max_order_notional` and `max_venues` may be absent or None: the risk
    profile's value applies. Venues must be among `known_venues`.
    """
    _check_user_id(user_id)
    try:
        return _build(user_id, fields, frozenset(known_venues))
    except InvalidPreferences as exc:
        raise InvalidPreferences(
            exc.field, f"preferences of user {_show(user_id)}: {exc.message}", user_id=user_id
        ) from None


def _build(user_id: str, fields: Mapping[str, object], known: frozenset[str]) -> UserPreferences:
    unknown = sorted(str(name) for name in fields.keys() - FIELDS)
    if unknown:
        raise InvalidPreferences(
            unknown[0][:64], f"unknown field {_show(unknown[0])}; known fields: {', '.join(sorted(FIELDS))}"
        )
    preferred = _venues(fields, "preferred_venues", known)
    excluded = _venues(fields, "excluded_venues", known)
    overlap = sorted(set(preferred) & set(excluded))
    if overlap:
        raise InvalidPreferences(
            "excluded_venues", f"excluded_venues must not name a preferred venue, got {_show(overlap[0])}"
        )
    tolerance = _choice(fields, "risk_tolerance", RISK_TOLERANCES, "medium")
    strategy = _choice(fields, "strategy", STRATEGIES, "best_price")
    if strategy == "preferred" and not preferred:
        raise InvalidPreferences("strategy", 'strategy "preferred" needs at least one preferred_venues entry')
    profile = RISK_PROFILES[tolerance]
    bias = _decimal(fields, "preferred_bias_bps", minimum=Decimal(0), maximum=MAX_BPS, nullable=False)
    slippage = _decimal(fields, "max_slippage_bps", minimum=None, maximum=MAX_BPS, nullable=True)
    notional = _decimal(fields, "max_order_notional", minimum=None, maximum=MAX_NOTIONAL, nullable=True)
    return UserPreferences(
        user_id=user_id,
        preferred_venues=preferred,
        excluded_venues=frozenset(excluded),
        preferred_bias_bps=Decimal(0) if bias is None else bias,
        risk_tolerance=tolerance,
        max_slippage_bps=profile.max_slippage_bps if slippage is None else slippage,
        max_order_notional=profile.max_order_notional if notional is None else notional,
        max_venues=_max_venues(fields, profile.max_venues),
        strategy=strategy,
    )


def _check_user_id(user_id: object) -> None:
    if not isinstance(user_id, str) or _USER_ID.fullmatch(user_id) is None:
        raise InvalidPreferences(
            "user_id", f"user_id must be 1..64 characters of [A-Za-z0-9._:@-], got {_show(user_id)}"
        )


def _venues(fields: Mapping[str, object], name: str, known: frozenset[str]) -> tuple[str, ...]:
    value = fields.get(name, ())
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=str)
    if not isinstance(value, (list, tuple)):
        raise InvalidPreferences(name, f"{name} must be an array of venue ids, got {_show(value)}")
    seen: list[str] = []
    for venue in value:
        if not isinstance(venue, str):
            raise InvalidPreferences(name, f"{name} must hold venue id strings only, got {_show(venue)}")
        if venue not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise InvalidPreferences(name, f"{name} names unknown venue {_show(venue)} (known: {listed})")
        if venue in seen:
            raise InvalidPreferences(name, f"{name} must not repeat a venue, got {_show(venue)} twice")
        seen.append(venue)
    return tuple(seen)


def _choice(fields: Mapping[str, object], name: str, allowed: tuple[_T, ...], default: _T) -> _T:
    value = fields.get(name, default)
    for choice in allowed:
        if value == choice:
            return choice
    options = " or ".join(f'"{choice}"' for choice in allowed)
    raise InvalidPreferences(name, f"{name} must be {options}, got {_show(value)}")


def _decimal(
    fields: Mapping[str, object],
    name: str,
    *,
    minimum: Decimal | None,
    maximum: Decimal,
    nullable: bool,
) -> Decimal | None:
    """Read a decimal that is ≥ minimum (or > 0 when minimum is None) and ≤ maximum."""
    if name not in fields or (nullable and fields[name] is None):
        return None
    value = fields[name]
    number: Decimal | None = None
    if isinstance(value, Decimal) and value.is_finite():
        number = value
    elif (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and len(value) <= _MAX_DECIMAL_CHARS and _DECIMAL.fullmatch(value)
    ):
        number = Decimal(value)
    if number is None:
        raise InvalidPreferences(
            name, f'{name} must be a decimal (a string such as "2.5", or an integer), got {_show(value)}'
        )
    if minimum is None and number <= 0:
        raise InvalidPreferences(name, f"{name} must be greater than 0, got {_show(value)}")
    if minimum is not None and number < minimum:
        raise InvalidPreferences(name, f"{name} must be at least {minimum}, got {_show(value)}")
    if number > maximum:
        raise InvalidPreferences(name, f"{name} must be at most {decimal_text(maximum)}, got {_show(value)}")
    return number


def _max_venues(fields: Mapping[str, object], default: int) -> int:
    value = fields.get("max_venues")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= len(VENUE_IDS):
        raise InvalidPreferences(
            "max_venues", f"max_venues must be an integer in 1..{len(VENUE_IDS)}, got {_show(value)}"
        )
    return value


def _show(value: object) -> str:
    """Render a value for an error message, about 40 characters at most."""
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return f"a {type(value).__name__} of {len(value)} item{'' if len(value) == 1 else 's'}"
    text = repr(str(value) if isinstance(value, Decimal) else value)
    return text if len(text) <= _ECHO_CHARS else f"{text[:_ECHO_CHARS]}... ({len(text)} characters)"


class PreferenceStore:
    """Answer each user's preferences: the latest topic message, else the config, else the defaults."""

    def __init__(self, configured: Mapping[str, UserPreferences], *, known_venues: Iterable[str]) -> None:
        """Start from the config's users; `known_venues` bounds what topic messages may name."""
        for user_id, preferences in configured.items():
            if preferences.user_id != user_id:
                raise ValueError(f"configured[{user_id!r}] holds the preferences of {preferences.user_id!r}")
        self._configured = dict(configured)
        self._known_venues = frozenset(known_venues)
        self._overrides: dict[str, UserPreferences] = {}

    def get(self, user_id: str) -> UserPreferences:
        """Return the preferences in force for `user_id`."""
        found = self._overrides.get(user_id)
        if found is None:
            found = self._configured.get(user_id)
        return found if found is not None else default_preferences(user_id)

    def apply_message(self, key: bytes | None, value: bytes | None) -> UserPreferences | None:
        """Apply one record of the compacted preferences topic; return the override now in force.

        A tombstone (value None) removes the user's override and returns None.
        Anything invalid raises InvalidPreferences and changes nothing.
        """
        key_user = _key_user(key)
        if value is None:
            if key_user is None:
                raise InvalidPreferences("key", "a tombstone needs the user_id as its record key")
            removed = self._overrides.pop(key_user, None)
            log.info("preferences_tombstone", user_id=key_user, had_override=removed is not None)
            return None
        document = _decode(value)
        user_id = document.pop("user_id", None)
        if not isinstance(user_id, str):
            raise InvalidPreferences("user_id", f"user_id is required as a string, got {_show(user_id)}")
        if key_user is not None and key_user != user_id:
            raise InvalidPreferences(
                "user_id", f"user_id {_show(user_id)} does not match the record key {_show(key_user)}"
            )
        issued_ns = document.pop(
            "issued_ns", None
        )  # checked by router.signed_settings when signatures are on
        if issued_ns is not None and (type(issued_ns) is not int or issued_ns <= 0):
            raise InvalidPreferences(
                "issued_ns", f"issued_ns must be a positive integer (ns), got {_show(issued_ns)}"
            )
        preferences = preferences_from_fields(user_id, document, known_venues=self._known_venues)
        self._overrides[user_id] = preferences
        log.info("preferences_applied", user_id=user_id, source="topic")
        return preferences


def _key_user(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        user_id = key.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPreferences("key", "the record key is not UTF-8") from None
    if _USER_ID.fullmatch(user_id) is None:
        raise InvalidPreferences("key", f"the record key must be a user_id, got {_show(user_id)}")
    return user_id


def _decode(value: bytes) -> dict[str, object]:
    """Return the message's fields without `v`; raise InvalidPreferences if it is not a v1 object."""
    if len(value) > MAX_MESSAGE_BYTES:
        raise InvalidPreferences(
            "value", f"message is {len(value)} bytes, over the limit of {MAX_MESSAGE_BYTES} bytes"
        )
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidPreferences("value", f"message is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidPreferences("value", f"message must be a JSON object, got {_show(document)}")
    version = document.pop("v", None)
    if type(version) is not int or version != 1:
        raise InvalidPreferences("v", f"v must be the integer 1, got {_show(version)}")
    return document
