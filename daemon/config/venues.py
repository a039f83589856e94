"""`[venues.<id>]`: one exchange each; endpoints and fees default to the real venue's, or its testnet's.

Every default comes from the venue's own `connectors/<venue>/facts.py`, through the
registry (`connectors.registry.FACTS`); nothing about a venue is written down here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

from connectors.registry import ADAPTERS, FACTS
from connectors.types import VENUE_IDS
from daemon.config.table import Table, show

SYMBOL_RE: Final = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}")
_ZERO: Final = Decimal(0)


DEFAULT_SYMBOLS: Final[tuple[str, ...]] = ("BTC-USDT", "ETH-USDT")


@dataclass(frozen=True, slots=True)
class VenueConfig:
    """`[venues.<id>]`: one exchange; endpoints and fees default to the real venue's (see `default`)."""

    venue: str
    enabled: bool
    symbols: tuple[str, ...]
    ws_url: str
    rest_url: str
    taker_fee_bps: Decimal
    maker_fee_bps: Decimal
    silence_timeout_ms: int
    testnet: bool = False  # endpoints default to the venue's testnet (`VenueFacts.testnet`)
    recv_window_ms: int = 5_000  # how long a signed request stays valid at the venue (live trading)
    trade: bool = True  # false: market data only, the router never routes here in any mode
    trade_url: str = ""  # the REST base URL orders go to (live); "" = rest_url
    depth: int | None = None  # levels of a local order book; None streams the best bid and offer only
    tier: str | None = None  # venues with tiers (kraken): the account's tier (its REST/trading budgets)

    @classmethod
    def default(cls, venue: str) -> VenueConfig:
        """Return the configuration of a venue whose section is absent: disabled, production defaults."""
        spec = FACTS[venue]
        return cls(
            venue=venue,
            enabled=False,
            symbols=DEFAULT_SYMBOLS,
            ws_url=spec.ws_url,
            rest_url=spec.rest_url,
            taker_fee_bps=spec.taker_fee_bps,
            maker_fee_bps=spec.maker_fee_bps,
            silence_timeout_ms=10_000,
            trade_url=spec.rest_url,
            tier=spec.default_tier,
        )


def default_venues() -> Mapping[str, VenueConfig]:
    """Return every known venue's configuration when `[venues]` is absent: all disabled."""
    return MappingProxyType({venue: VenueConfig.default(venue) for venue in VENUE_IDS})


def read_venues(t: Table) -> Mapping[str, VenueConfig]:
    """Validate the `[venues]` table: every known venue, a present section enabling it unless it says not."""
    for name in t.names():
        if name not in VENUE_IDS:
            raise t.error(name, f"unknown venue; known venues: {', '.join(VENUE_IDS)}")
    configs = {v: _venue(t.table(v), v) if t.has(v) else VenueConfig.default(v) for v in VENUE_IDS}
    return MappingProxyType(configs)


def _venue(t: Table, venue: str) -> VenueConfig:
    d = VenueConfig.default(venue)
    symbols = t.string_list("symbols", d.symbols)
    if not symbols:
        raise t.error("symbols", "must name at least one symbol")
    for symbol in symbols:
        if not SYMBOL_RE.fullmatch(symbol):
            expected = 'canonical BASE-QUOTE upper case like "BTC-USDT"'
            raise t.error("symbols", f"must be {expected}, got {show(symbol)}")
    testnet = t.boolean("testnet", d.testnet)
    net = FACTS[venue].testnet if testnet else None
    if testnet and net is None:
        raise t.error("testnet", FACTS[venue].no_testnet)
    ws_default, rest_default = (net.ws_url, net.rest_url) if net else (d.ws_url, d.rest_url)
    rest_url = _url(t, "rest_url", rest_default, ("http", "https"))
    trade_default = net.trade_url if net and not t.has("rest_url") else rest_url
    cfg = VenueConfig(
        venue=venue,
        enabled=t.boolean("enabled", True),  # a present section means "use this venue" unless it says not
        symbols=symbols,
        ws_url=_url(t, "ws_url", ws_default, ("ws", "wss")),
        rest_url=rest_url,
        taker_fee_bps=t.decimal("taker_fee_bps", d.taker_fee_bps, minimum=_ZERO),
        maker_fee_bps=t.decimal("maker_fee_bps", d.maker_fee_bps, minimum=_ZERO),
        silence_timeout_ms=t.integer("silence_timeout_ms", d.silence_timeout_ms, minimum=1),
        testnet=testnet,
        recv_window_ms=t.integer("recv_window_ms", d.recv_window_ms, minimum=1, maximum=60_000),
        depth=_depth(t, venue),
        trade=t.boolean("trade", d.trade),
        trade_url=_url(t, "trade_url", trade_default, ("http", "https")),
        tier=_tier(t, venue),
    )
    t.finish()
    return cfg


def _depth(t: Table, venue: str) -> int | None:
    if not t.has("depth"):
        return None
    limit = ADAPTERS[venue].max_depth
    if limit is None:
        raise t.error("depth", f"{venue} streams the best bid and offer only; remove the key")
    return t.integer("depth", 0, minimum=1, maximum=limit)


def _tier(t: Table, venue: str) -> str | None:
    """Read `tier`: the account tier sets a venue's documented counters (kraken); others have none."""
    facts = FACTS[venue]
    if facts.default_tier is None:
        if t.has("tier"):
            tiered = ", ".join(v for v, f in FACTS.items() if f.tiers)
            raise t.error("tier", f"only {tiered} has verification tiers; {venue} reads its limits itself")
        return None
    return t.choice("tier", facts.tiers, facts.default_tier)


def _url(t: Table, name: str, default: str, schemes: tuple[str, str]) -> str:
    url = t.string(name, default)
    try:
        parts = urlsplit(url)
        valid = parts.scheme in schemes and bool(parts.hostname)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        valid = False
    if not valid:
        raise t.error(name, f"must be a {schemes[0]}:// or {schemes[1]}:// URL with a host, got {show(url)}")
    return url
