"""Binance Spot: bookTicker market data over one combined WebSocket stream, and the REST surface.

`BinanceConnector` (REST on python-binance's AsyncClient: market data, account,
orders) and its value types load on first use, so the market-data path does not
pay for importing python-binance.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from connectors.binance.parse import BookTickerParser
from connectors.binance.stream import BinanceAdapter

if TYPE_CHECKING:
    from connectors.binance.filters import SymbolFilters
    from connectors.binance.payloads import Balance, Kline, OrderReport, Ticker24h, TradeFill
    from connectors.binance.rest import BinanceConnector
    from connectors.binance.session import ApiCredentials

_REST_EXPORTS = {
    "ApiCredentials": "connectors.binance.session",
    "BinanceConnector": "connectors.binance.rest",
    "SymbolFilters": "connectors.binance.filters",
    "Balance": "connectors.binance.payloads",
    "Kline": "connectors.binance.payloads",
    "OrderReport": "connectors.binance.payloads",
    "Ticker24h": "connectors.binance.payloads",
    "TradeFill": "connectors.binance.payloads",
}

__all__ = [
    "ApiCredentials",
    "Balance",
    "BinanceAdapter",
    "BinanceConnector",
    "BookTickerParser",
    "Kline",
    "OrderReport",
    "SymbolFilters",
    "Ticker24h",
    "TradeFill",
]


def __getattr__(name: str) -> Any:
    module = _REST_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'connectors.binance' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
