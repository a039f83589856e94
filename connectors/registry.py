"""The venue registry: one line per exchange adapter."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.base import VenueAdapter
from connectors.binance.stream import BinanceAdapter
from connectors.bybit.stream import BybitAdapter
from connectors.coinbase.stream import CoinbaseAdapter
from connectors.kraken.stream import KrakenAdapter
from connectors.okx.stream import OkxAdapter

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
