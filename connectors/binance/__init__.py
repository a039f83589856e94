"""Binance Spot: bookTicker market data over one combined WebSocket stream."""

from connectors.binance.parse import BookTickerParser
from connectors.binance.stream import BinanceAdapter

__all__ = ["BinanceAdapter", "BookTickerParser"]
