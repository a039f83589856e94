"""The venue registry: one line per venue (`VENUES`): its adapter, its facts and its signed trading client.

`ADAPTERS`, `FACTS` and `TRADING` are views of `VENUES`; adding a venue is one
folder under `connectors/`, one line here and its recorded frames (README, "Adding a venue").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from connectors.base import VenueAdapter
from connectors.binance.facts import FACTS as BINANCE
from connectors.binance.stream import BinanceAdapter
from connectors.bybit.facts import FACTS as BYBIT
from connectors.bybit.signing import BybitCredentials
from connectors.bybit.stream import BybitAdapter
from connectors.bybit.trading import BybitTrading
from connectors.coinbase.facts import FACTS as COINBASE
from connectors.coinbase.signing import CoinbaseCredentials
from connectors.coinbase.stream import CoinbaseAdapter
from connectors.coinbase.trading import CoinbaseTrading
from connectors.facts import VenueFacts
from connectors.kraken.facts import FACTS as KRAKEN
from connectors.kraken.signing import KrakenCredentials
from connectors.kraken.stream import KrakenAdapter
from connectors.kraken.trading import KrakenTrading
from connectors.okx.facts import FACTS as OKX
from connectors.okx.signing import OkxCredentials
from connectors.okx.stream import OkxAdapter
from connectors.okx.trading import OkxTrading
from connectors.trading import TradingVenue, venue_client_order_id


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
    tier: str | None = None  # the account's tier (`VenueFacts.tiers`); None: the venue's default


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


@dataclass(frozen=True, slots=True)
class Venue:
    """One registry line: the market-data adapter, the facts the config reads, the trading client."""

    adapter: type[VenueAdapter]
    facts: VenueFacts
    trading: TradingSpec | None  # None: built by the daemon itself (Binance, see VENUES)


# Binance's trading client is built by the daemon itself: it signs with an HMAC secret or an Ed25519 key file.
VENUES: Final[Mapping[str, Venue]] = MappingProxyType(
    {
        "binance": Venue(BinanceAdapter, BINANCE, None),
        "bybit": Venue(BybitAdapter, BYBIT, TradingSpec(("api_key", "api_secret"), _bybit)),
        "okx": Venue(OkxAdapter, OKX, TradingSpec(("api_key", "api_secret", "api_passphrase"), _okx)),
        "coinbase": Venue(
            CoinbaseAdapter, COINBASE, TradingSpec(("api_key_name", "api_private_key"), _coinbase)
        ),
        "kraken": Venue(KrakenAdapter, KRAKEN, TradingSpec(("api_key", "api_secret"), _kraken)),
    }
)
ADAPTERS: Final[dict[str, type[VenueAdapter]]] = {venue: v.adapter for venue, v in VENUES.items()}
FACTS: Final[Mapping[str, VenueFacts]] = MappingProxyType({venue: v.facts for venue, v in VENUES.items()})
TRADING: Final[dict[str, TradingSpec]] = {
    venue: v.trading for venue, v in VENUES.items() if v.trading is not None
}


def client_order_id(venue: str, request_id: str, leg: int) -> str:
    """Return the client order id of leg `leg` of `request_id` on `venue`, in the form it accepts.

    A venue outside the registry (a test's fake) gets the `hex32` form.
    """
    facts = FACTS.get(venue)
    return venue_client_order_id(request_id, leg, "hex32" if facts is None else facts.client_id_style)
