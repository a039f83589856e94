"""Binance symbol rules from `GET /api/v3/exchangeInfo`, and rounding an order onto them safely.

Binance refuses (-1013 "Filter failure: ...") an order whose price is off the
PRICE_FILTER grid, whose quantity is off the LOT_SIZE grid, or whose notional
is outside MIN_NOTIONAL / NOTIONAL. `SymbolFilters.prepare` rounds a leg onto
the grids in the direction that can never hurt the requester — the quantity
down (never more than asked), a buy price down and a sell price up (never
worse than the limit) — and refuses what still breaks a rule, before anything
is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connectors.base import decimal_of, field
from connectors.binance.errors import OrderRuleViolation
from connectors.errors import ParseError
from connectors.symbols import join_symbol
from connectors.trading import SymbolRules
from connectors.types import Side

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class SymbolFilters:
    """The trading rules of one symbol; a zero tick, step, minimum or maximum disables that check."""

    venue_symbol: str
    base_asset: str
    quote_asset: str
    status: str
    min_price: Decimal
    max_price: Decimal
    tick_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    step_size: Decimal
    min_notional: Decimal
    max_notional: Decimal | None

    @property
    def symbol(self) -> str:
        """Return the canonical symbol (`BTC-USDT`)."""
        return join_symbol(self.base_asset, self.quote_asset)

    def rules(self) -> SymbolRules:
        """Return these filters as venue-neutral rules (grids anchored at minPrice and minQty)."""
        return SymbolRules(
            venue_symbol=self.venue_symbol,
            base_asset=self.base_asset,
            quote_asset=self.quote_asset,
            tradable=self.status == "TRADING",
            tick_size=self.tick_size,
            step_size=self.step_size,
            min_qty=self.min_qty,
            max_qty=self.max_qty,
            min_notional=self.min_notional,
            max_notional=self.max_notional or _ZERO,
            min_price=self.min_price,
            max_price=self.max_price,
        )

    def round_quantity(self, quantity: Decimal) -> Decimal:
        """Return `quantity` rounded down onto the LOT_SIZE grid (anchored at minQty)."""
        return self.rules().round_quantity(quantity)

    def round_price(self, price: Decimal, side: Side) -> Decimal:
        """Return `price` on the tick grid: a buy rounds down, a sell up — never worse than `price`."""
        return self.rules().round_price(price, side)

    def prepare(self, side: Side, quantity: Decimal, limit_price: Decimal) -> tuple[Decimal, Decimal]:
        """Return (quantity, price) rounded onto the grids; raise OrderRuleViolation if still invalid."""
        if self.status != "TRADING":
            raise OrderRuleViolation(f"{self.venue_symbol} is not trading (status {self.status})")
        return self.rules().prepare(side, quantity, limit_price)


def parse_exchange_info(payload: object) -> dict[str, SymbolFilters]:
    """Return the rules of every symbol in an exchangeInfo answer, by venue symbol (`BTCUSDT`).

    Parses the documented shape (unknown filter types are skipped)::

        {"timezone": "UTC", "serverTime": 1565246363776, "rateLimits": [...], "exchangeFilters": [],
         "symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
                      "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
                                   "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
                                  {"filterType": "LOT_SIZE", "minQty": "0.00001000",
                                   "maxQty": "9000.00000000", "stepSize": "0.00001000"},
                                  {"filterType": "NOTIONAL", "minNotional": "5.00000000",
                                   "applyMinToMarket": true, "maxNotional": "9000000.00000000",
                                   "applyMaxToMarket": false, "avgPriceMins": 5}, ...]}]}
    """
    if not isinstance(payload, dict):
        raise ParseError(f"binance exchangeInfo must be an object, got {type(payload).__name__}")
    symbols = field(payload, "symbols", list, "binance exchangeInfo")
    parsed = {}
    for entry in symbols:
        if not isinstance(entry, dict):
            raise ParseError("binance exchangeInfo: each symbol must be an object")
        rules = parse_symbol(entry)
        parsed[rules.venue_symbol] = rules
    return parsed


def parse_symbol(entry: dict[str, Any]) -> SymbolFilters:
    """Return the rules of one `symbols[]` entry of exchangeInfo."""
    name = field(entry, "symbol", str, "binance exchangeInfo symbol")
    where = f"binance exchangeInfo {name}"
    by_type: dict[str, dict[str, Any]] = {}
    for item in field(entry, "filters", list, where):
        if isinstance(item, dict) and isinstance(item.get("filterType"), str):
            by_type[item["filterType"]] = item
    price = by_type.get("PRICE_FILTER", {})
    lot = by_type.get("LOT_SIZE", {})
    notional = by_type.get("NOTIONAL", {})
    legacy = by_type.get("MIN_NOTIONAL", {})
    max_notional = _number(notional, "maxNotional", where)
    return SymbolFilters(
        venue_symbol=name,
        base_asset=field(entry, "baseAsset", str, where),
        quote_asset=field(entry, "quoteAsset", str, where),
        status=field(entry, "status", str, where),
        min_price=_number(price, "minPrice", where),
        max_price=_number(price, "maxPrice", where),
        tick_size=_number(price, "tickSize", where),
        min_qty=_number(lot, "minQty", where),
        max_qty=_number(lot, "maxQty", where),
        step_size=_number(lot, "stepSize", where),
        # A LIMIT order must meet both filters when a symbol still carries the legacy one.
        min_notional=max(_number(notional, "minNotional", where), _number(legacy, "minNotional", where)),
        max_notional=max_notional or None,
    )


def _number(filter_: Mapping[str, Any], key: str, where: str) -> Decimal:
    value = filter_.get(key)
    if value is None:
        return _ZERO
    return decimal_of(value, f"{where} {filter_.get('filterType')}.{key}")
