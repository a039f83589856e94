"""Bybit v5 spot: level-1 order book (`orderbook.1.<SYM>`) market data over the public WebSocket."""

from connectors.bybit.parse import OrderbookParser
from connectors.bybit.stream import BybitAdapter

__all__ = ["BybitAdapter", "OrderbookParser"]
