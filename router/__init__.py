"""What decides, and the state it decides on: PriceCache, arbitrage detector, SmartRouter.

Imports `connectors` only; never `daemon`.
"""
