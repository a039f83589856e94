"""`[users.<id>]`: a user's routing preferences (the fields of a `smartroute.preferences` message),
the public keys their requests are signed with, and what they are entitled to trade.

Entitlements (`venues`, `symbols`, `kinds`) come from this file only: a preferences message never
changes them. An absent entitlement list allows everything of its kind.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from connectors.types import VENUE_IDS, RiskTolerance, Strategy
from daemon.config.table import Table, show
from router.signatures import parse_public_key

RISK_TOLERANCES: Final[tuple[RiskTolerance, ...]] = ("low", "medium", "high")
STRATEGIES: Final[tuple[Strategy, ...]] = ("best_price", "preferred", "fastest", "split")
USER_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
SYMBOL_RE: Final = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}")
REQUEST_KINDS: Final = ("order", "arbitrage")
# The fields of [users.<id>] that are not preferences: who the user is and what they may trade.
ACCESS_FIELDS: Final = frozenset({"public_keys", "venues", "symbols", "kinds"})
_ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class UserConfig:
    """`[users.<id>]`: a user's routing preferences (the fields of a `smartroute.preferences` message)."""

    user_id: str
    preferred_venues: tuple[str, ...] = ()
    excluded_venues: tuple[str, ...] = ()
    preferred_bias_bps: Decimal = Decimal(0)
    risk_tolerance: RiskTolerance = "medium"
    max_slippage_bps: Decimal | None = None  # None: derived from risk_tolerance
    max_order_notional: Decimal | None = None
    strategy: Strategy = "best_price"
    public_keys: tuple[str, ...] = ()  # base64 of raw Ed25519 public keys; several allow rotation
    venues: tuple[str, ...] | None = None  # entitlements; None allows every venue
    symbols: tuple[str, ...] | None = None  # None allows every symbol
    kinds: tuple[str, ...] | None = None  # "order", "arbitrage"; None allows both


def no_users() -> Mapping[str, UserConfig]:
    """Return the users of a config without `[users]`: none."""
    return MappingProxyType({})


def read_users(t: Table) -> Mapping[str, UserConfig]:
    """Validate the `[users]` table: one `[users.<id>]` section per user."""
    users = {}
    for user_id in sorted(t.names()):
        if not USER_ID_RE.fullmatch(user_id):
            raise t.error(user_id, "a user id is 1 to 64 characters of A-Z a-z 0-9 . _ : -")
        users[user_id] = _user(t.table(user_id), user_id)
    return MappingProxyType(users)


def _user(t: Table, user_id: str) -> UserConfig:
    d = UserConfig(user_id=user_id)
    preferred = _venue_list(t, "preferred_venues")
    excluded = _venue_list(t, "excluded_venues")
    overlap = [v for v in excluded if v in preferred]
    if overlap:
        raise t.error("excluded_venues", f"must not name a preferred venue, got {show(overlap)}")
    cfg = UserConfig(
        user_id=user_id,
        preferred_venues=preferred,
        excluded_venues=excluded,
        preferred_bias_bps=t.decimal("preferred_bias_bps", d.preferred_bias_bps, minimum=_ZERO),
        risk_tolerance=t.choice("risk_tolerance", RISK_TOLERANCES, d.risk_tolerance),
        max_slippage_bps=t.optional_decimal("max_slippage_bps", minimum=_ZERO, strict=True),
        max_order_notional=t.optional_decimal("max_order_notional", minimum=_ZERO, strict=True),
        strategy=t.choice("strategy", STRATEGIES, d.strategy),
        public_keys=public_key_list(t),
        venues=_entitled(t, "venues", VENUE_IDS),
        symbols=_symbols(t),
        kinds=_entitled(t, "kinds", REQUEST_KINDS),
    )
    t.finish()
    return cfg


def public_key_list(t: Table) -> tuple[str, ...]:
    """Read `public_keys`: base64 Ed25519 public keys, each checked to be a real key."""
    keys = t.string_list("public_keys", ())
    for i, key in enumerate(keys):
        try:
            parse_public_key(key)
        except ValueError as exc:
            raise t.error("public_keys", f"entry {i + 1}: {exc}") from None
    return keys


def _entitled(t: Table, name: str, known: tuple[str, ...]) -> tuple[str, ...] | None:
    if not t.has(name):
        return None
    items = t.string_list(name, ())
    for item in items:
        if item not in known:
            raise t.error(name, f"unknown entry {show(item)}; known: {', '.join(known)}")
    return items


def _symbols(t: Table) -> tuple[str, ...] | None:
    if not t.has("symbols"):
        return None
    symbols = t.string_list("symbols", ())
    for symbol in symbols:
        if not SYMBOL_RE.fullmatch(symbol):
            raise t.error("symbols", f"{show(symbol)} is not a canonical symbol like BTC-USDT")
    return symbols


def _venue_list(t: Table, name: str) -> tuple[str, ...]:
    venues = t.string_list(name, ())
    for venue in venues:
        if venue not in VENUE_IDS:
            raise t.error(name, f"unknown venue {show(venue)}; known venues: {', '.join(VENUE_IDS)}")
    return venues
