"""`[venues.<id>]`: one exchange each; endpoints and fees default to the real venue's, or its testnet's."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

from connectors.registry import ADAPTERS, KRAKEN_TIERS
from connectors.types import VENUE_IDS
from daemon.config.table import Table, show

SYMBOL_RE: Final = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}")
_ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class VenueDefaults:
    """A venue's real production endpoints and tier-0 fees."""

    ws_url: str
    rest_url: str
    taker_fee_bps: Decimal
    maker_fee_bps: Decimal


VENUE_DEFAULTS: Final[Mapping[str, VenueDefaults]] = MappingProxyType(
    {
        "binance": VenueDefaults(
            "wss://stream.binance.com:9443", "https://api.binance.com", Decimal(10), Decimal(10)
        ),
        "bybit": VenueDefaults(
            "wss://stream.bybit.com/v5/public/spot", "https://api.bybit.com", Decimal(10), Decimal(10)
        ),
        "okx": VenueDefaults(
            "wss://ws.okx.com:8443/ws/v5/public", "https://www.okx.com", Decimal(10), Decimal(8)
        ),
        "coinbase": VenueDefaults(
            "wss://advanced-trade-ws.coinbase.com", "https://api.coinbase.com", Decimal(120), Decimal(60)
        ),
        "kraken": VenueDefaults("wss://ws.kraken.com/v2", "https://api.kraken.com", Decimal(40), Decimal(25)),
    }
)


@dataclass(frozen=True, slots=True)
class TestnetEndpoints:
    """Where `[venues.<id>] testnet = true` points a venue: market data and trading."""

    ws_url: str
    rest_url: str
    trade_url: str


# Venues with a testnet or demo environment smartroute can run against (EXCHANGES.md, EXCHANGES-TRADING.md).
TESTNET_ENDPOINTS: Final[Mapping[str, TestnetEndpoints]] = MappingProxyType(
    {
        "binance": TestnetEndpoints(
            "wss://stream.testnet.binance.vision",
            "https://testnet.binance.vision",
            "https://testnet.binance.vision",
        ),
        "bybit": TestnetEndpoints(
            "wss://stream-testnet.bybit.com/v5/public/spot",
            "https://api-testnet.bybit.com",
            "https://api-testnet.bybit.com",
        ),
        # OKX demo trading: demo streams, and orders carry `x-simulated-trading: 1` (its client adds it).
        "okx": TestnetEndpoints(
            "wss://wspap.okx.com:8443/ws/v5/public", "https://www.okx.com", "https://openapi.okx.com"
        ),
    }
)
# Why `testnet = true` is refused where no usable environment exists.
NO_TESTNET: Final[Mapping[str, str]] = MappingProxyType(
    {
        "kraken": "Kraken has no spot sandbox; test with validate-only orders and small live orders",
        "coinbase": (
            "Coinbase's sandbox is a static mock (canned answers, no /products or /time, no signing "
            "check): it cannot run the daemon; test with small live orders"
        ),
    }
)


KRAKEN_DEFAULT_TIER: Final = "starter"

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
    testnet: bool = False  # endpoints default to the venue's testnet (TESTNET_ENDPOINTS)
    recv_window_ms: int = 5_000  # how long a signed request stays valid at the venue (live trading)
    trade: bool = True  # false: market data only, the router never routes here in any mode
    trade_url: str = ""  # the REST base URL orders go to (live); "" = rest_url
    depth: int | None = None  # levels of a local order book; None streams the best bid and offer only
    tier: str | None = None  # kraken only: the account's verification tier (its REST/trading budgets)

    @classmethod
    def default(cls, venue: str) -> VenueConfig:
        """Return the configuration of a venue whose section is absent: disabled, production defaults."""
        spec = VENUE_DEFAULTS[venue]
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
            tier=KRAKEN_DEFAULT_TIER if venue == "kraken" else None,
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
    if testnet and venue in NO_TESTNET:
        raise t.error("testnet", NO_TESTNET[venue])
    if testnet and venue not in TESTNET_ENDPOINTS:
        raise t.error("testnet", f"no testnet endpoints are known for {venue}")
    net = TESTNET_ENDPOINTS[venue] if testnet else None
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
    """Read `tier`: Kraken's verification tier sets its documented counters; no other venue has one."""
    if venue != "kraken":
        if t.has("tier"):
            raise t.error("tier", f"only kraken has verification tiers; {venue} reads its limits itself")
        return None
    return t.choice("tier", KRAKEN_TIERS, KRAKEN_DEFAULT_TIER)


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
