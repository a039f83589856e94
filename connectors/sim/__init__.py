"""A local exchange simulator: each venue's real market-data WebSocket protocol on 127.0.0.1.

Used by the demo, the integration tests and the benchmarks. `SIM_VENUES` maps a
venue id to its protocol class (one module per venue); `ExchangeSimulator`
serves them, from a seeded price model (`market.MarketModel`) or scripted quotes.
"""

from connectors.sim.endpoint import SubscriptionTimeout
from connectors.sim.market import BookTop, MarketModel, SimulatorError, SymbolSpec
from connectors.sim.protocol import VenueProtocol, VenueRules
from connectors.sim.server import SIM_VENUES, ExchangeSimulator

__all__ = [
    "SIM_VENUES",
    "BookTop",
    "ExchangeSimulator",
    "MarketModel",
    "SimulatorError",
    "SubscriptionTimeout",
    "SymbolSpec",
    "VenueProtocol",
    "VenueRules",
]
