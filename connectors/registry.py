"""The venue registry: one line per exchange adapter."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.base import VenueAdapter
from connectors.binance.stream import BinanceAdapter
from connectors.bybit.stream import BybitAdapter

ADAPTERS: dict[str, type[VenueAdapter]] = {
    "binance": BinanceAdapter,
    "bybit": BybitAdapter,
}


def build_adapter(venue: str, symbols: Sequence[str], ws_url: str | None = None) -> VenueAdapter:
    """Build the market-data adapter of `venue`; raise ValueError for a venue without one."""
    adapter_class = ADAPTERS.get(venue)
    if adapter_class is None:
        raise ValueError(f"no market-data adapter for venue {venue!r}; known: {', '.join(sorted(ADAPTERS))}")
    return adapter_class(symbols, ws_url=ws_url)
