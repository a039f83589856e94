"""A local exchange simulator: each venue's real market-data protocol on 127.0.0.1.

Binance, Bybit, OKX, Coinbase Advanced Trade and Kraken v2: BBO channels,
depth with the venue's own sequence numbers and checksums (`depth`), REST
snapshots where the venue has them, and switches that inject gaps, duplicates,
bad checksums, crossed books and silent stalls. Used by the demo, the
integration tests and the benchmarks. `SIM_VENUES` maps a venue id to its
protocol class (one module per venue); `ExchangeSimulator` serves them, from a
seeded price model (`market.MarketModel`) or scripted quotes.
"""

from connectors.sim.endpoint import SubscriptionTimeout
from connectors.sim.faults import Fault
from connectors.sim.market import BookTop, MarketModel, SimulatorError, SymbolSpec
from connectors.sim.protocol import VenueProtocol, VenueRules
from connectors.sim.server import SIM_VENUES, ExchangeSimulator

__all__ = [
    "SIM_VENUES",
    "BookTop",
    "ExchangeSimulator",
    "Fault",
    "MarketModel",
    "SimulatorError",
    "SubscriptionTimeout",
    "SymbolSpec",
    "VenueProtocol",
    "VenueRules",
]
