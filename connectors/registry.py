"""The venue registry: one line per exchange adapter (market data), one per signed trading client."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from connectors.base import VenueAdapter
from connectors.binance.stream import BinanceAdapter
from connectors.bybit.signing import BybitCredentials
from connectors.bybit.stream import BybitAdapter
from connectors.bybit.trading import BybitTrading
from connectors.coinbase.signing import CoinbaseCredentials
from connectors.coinbase.stream import CoinbaseAdapter
from connectors.coinbase.trading import CoinbaseTrading
from connectors.kraken.private import TIERS
from connectors.kraken.signing import KrakenCredentials
from connectors.kraken.stream import KrakenAdapter
from connectors.kraken.trading import KrakenTrading
from connectors.okx.signing import OkxCredentials
from connectors.okx.stream import OkxAdapter
from connectors.okx.trading import OkxTrading
from connectors.trading import TradingVenue

ADAPTERS: dict[str, type[VenueAdapter]] = {
    "binance": BinanceAdapter,
    "bybit": BybitAdapter,
    "okx": OkxAdapter,
    "coinbase": CoinbaseAdapter,
    "kraken": KrakenAdapter,
}


def build_adapter(
    venue: str,
    symbols: Sequence[str],
    ws_url: str | None = None,
    *,
    rest_url: str | None = None,
    depth: int | None = None,
) -> VenueAdapter:
    """Build the market-data adapter of `venue`; raise ValueError for a venue without one or bad settings.

    `depth` None streams the best bid and offer; an int keeps a local book of that many levels.
    """
    adapter_class = ADAPTERS.get(venue)
    if adapter_class is None:
        raise ValueError(f"no market-data adapter for venue {venue!r}; known: {', '.join(sorted(ADAPTERS))}")
    return adapter_class(symbols, ws_url=ws_url, rest_url=rest_url, depth=depth)


@dataclass(frozen=True, slots=True)
class TradingSettings:
    """What the daemon's config says about trading on one venue (`[venues.<id>]`)."""

    symbols: tuple[str, ...]
    rest_url: str  # the REST base URL orders go to
    testnet: bool = False
    recv_window_ms: int = 5_000
    tier: str | None = None  # kraken's verification tier (`connectors.kraken.private.TIERS`); None: starter


# Kraken's verification tiers, each with its documented REST and trading counters.
KRAKEN_TIERS: tuple[str, ...] = tuple(TIERS)


def _bybit(secrets: Sequence[str], s: TradingSettings) -> TradingVenue:
    return BybitTrading(
        BybitCredentials(*secrets), s.symbols, rest_url=s.rest_url, recv_window_ms=s.recv_window_ms
    )


def _okx(secrets: Sequence[str], s: TradingSettings) -> TradingVenue:
    return OkxTrading(
        credentials=OkxCredentials(*secrets), testnet=s.testnet, rest_url=s.rest_url, symbols=s.symbols
    )


def _coinbase(secrets: Sequence[str], s: TradingSettings) -> TradingVenue:
    return CoinbaseTrading(credentials=CoinbaseCredentials(*secrets), symbols=s.symbols, rest_url=s.rest_url)


def _kraken(secrets: Sequence[str], s: TradingSettings) -> TradingVenue:
    return KrakenTrading(
        credentials=KrakenCredentials(*secrets),
        symbols=s.symbols,
        rest_url=s.rest_url,
        tier=s.tier or "starter",
    )


@dataclass(frozen=True, slots=True)
class TradingSpec:
    """How to build a venue's signed trading client: the secrets it takes, in order, and the builder.

    Each secret's name, upper-cased and prefixed with the venue, is its environment
    variable (`okx` + `api_passphrase` → `OKX_API_PASSPHRASE`).
    """

    secrets: tuple[str, ...]
    build: Callable[[Sequence[str], TradingSettings], TradingVenue]


# Binance is built by the daemon itself: it signs with an HMAC secret or an Ed25519 key file.
TRADING: dict[str, TradingSpec] = {
    "bybit": TradingSpec(("api_key", "api_secret"), _bybit),
    "okx": TradingSpec(("api_key", "api_secret", "api_passphrase"), _okx),
    "coinbase": TradingSpec(("api_key_name", "api_private_key"), _coinbase),
    "kraken": TradingSpec(("api_key", "api_secret"), _kraken),
}
