"""Parse Coinbase Advanced Trade REST answers into the trading seam's types (pure, no I/O).

Shapes (docs.cdp.coinbase.com API reference; the official SDK's `rest/types`):

    order    {"order_id", "product_id", "client_order_id", "side": "BUY", "status": "FILLED",
              "order_configuration": {"sor_limit_ioc": {"base_size", "limit_price"}},
              "filled_size", "filled_value", "average_filled_price", "total_fees", "created_time"}
    fill     {"trade_id", "order_id", "trade_time", "price", "size", "commission",
              "size_in_quote": false, "liquidity_indicator": "TAKER", "side", "product_id"}
    account  {"currency": "BTC", "available_balance": {"value", "currency"}, "hold": {"value", ...}}
    product  {"product_id", "base_increment", "quote_increment", "price_increment", "base_min_size",
              "base_max_size", "quote_min_size", "quote_max_size", "status": "online",
              "trading_disabled", "cancel_only", "post_only", "is_disabled", "view_only",
              "base_currency_id", "quote_currency_id", "alias", "alias_to"}
    summary  {"fee_tier": {"taker_fee_rate": "0.006", "maker_fee_rate": "0.004", ...}, ...}

Fills carry no fee currency: the commission is in the quote currency (ccxt
assumes the same; EXCHANGES-TRADING.md §3.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from connectors.coinbase.parse import rfc3339_ns
from connectors.errors import ParseError
from connectors.symbols import split_symbol
from connectors.trading import AccountBalance, OrderReport, SymbolRules, TradeFill
from connectors.types import BPS, Side

# Statuses in which an order can still trade (or may yet): everything else is final.
OPEN_STATUSES: Final = frozenset({"OPEN", "PENDING", "QUEUED", "CANCEL_QUEUED", "UNKNOWN_ORDER_STATUS"})
_ZERO = Decimal(0)


def _obj(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ParseError(f"coinbase {name} must be an object, got {type(value).__name__}")
    return value


def decimal_field(item: Mapping[str, Any], key: str, name: str, *, default: Decimal | None = None) -> Decimal:
    """Return `item[key]` as a Decimal (a string or a number); `default` when missing or empty."""
    value = item.get(key)
    if (value is None or value == "") and default is not None:
        return default
    try:
        result = Decimal(str(value)) if isinstance(value, str | int) else None
    except InvalidOperation:
        result = None
    if result is None or not result.is_finite():
        raise ParseError(f"coinbase {name}.{key} must be a decimal string, got {value!r}")
    return result


def text_field(item: Mapping[str, Any], key: str, name: str) -> str:
    """Return a non-empty string field."""
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise ParseError(f"coinbase {name}.{key} must be a non-empty string, got {value!r}")
    return value


def time_ms(value: Any) -> int | None:
    """Return milliseconds of an RFC 3339 time, or None when absent."""
    if value in (None, ""):
        return None
    return rfc3339_ns(value, "coinbase time") // 1_000_000


def parse_order(data: Any, symbol: str) -> OrderReport:
    """Parse one order object (get-order's `order`, or an item of list-orders)."""
    order = _obj(data, "order")
    side = text_field(order, "side", "order").upper()
    if side not in ("BUY", "SELL"):
        raise ParseError(f"coinbase order.side must be BUY or SELL, got {side!r}")
    status = text_field(order, "status", "order").upper()
    limit = _limit_config(order.get("order_configuration"))
    return OrderReport(
        symbol=symbol,
        venue_order_id=text_field(order, "order_id", "order"),
        client_order_id=str(order.get("client_order_id") or ""),
        side="buy" if side == "BUY" else "sell",
        status=status,
        is_open=status in OPEN_STATUSES,
        price=decimal_field(limit, "limit_price", "order", default=_ZERO),
        orig_qty=decimal_field(limit, "base_size", "order", default=_ZERO),
        executed_qty=decimal_field(order, "filled_size", "order", default=_ZERO),
        cumulative_quote_qty=decimal_field(order, "filled_value", "order", default=_ZERO),
        time_ms=time_ms(order.get("created_time")),
    )


def _limit_config(value: Any) -> Mapping[str, Any]:
    config = value if isinstance(value, Mapping) else {}
    for kind in (
        "sor_limit_ioc",
        "limit_limit_fok",
        "limit_limit_gtc",
        "limit_limit_gtd",
        "market_market_ioc",
    ):
        inner = config.get(kind)
        if isinstance(inner, Mapping):
            return inner
    return {}


def parse_fills(data: Any, quote_asset: str, order_id: str | None = None) -> list[TradeFill]:
    """Parse list-fills' `fills` (of `order_id` only, when given); the commission is in the quote currency.

    The `order_ids` filter is checked here too: a server that ignored it would
    otherwise hand another order's executions to this one.
    """
    fills = _obj(data, "fills answer").get("fills")
    if not isinstance(fills, list):
        raise ParseError("coinbase fills answer must hold a 'fills' list")
    parsed = []
    for item in fills:
        fill = _obj(item, "fill")
        if order_id is not None and fill.get("order_id") not in (None, order_id):
            continue
        price = decimal_field(fill, "price", "fill")
        size = decimal_field(fill, "size", "fill")
        quantity = size / price if fill.get("size_in_quote") is True and price else size
        parsed.append(
            TradeFill(
                trade_id=str(fill.get("trade_id") or fill.get("entry_id") or ""),
                price=price,
                quantity=quantity,
                fee=decimal_field(fill, "commission", "fill", default=_ZERO),
                fee_asset=quote_asset,
                time_ms=time_ms(fill.get("trade_time")),
            )
        )
    return parsed


def parse_accounts(data: Any, into: dict[str, AccountBalance]) -> None:
    """Add list-accounts' `accounts` to `into` (by upper-case currency; repeated currencies add up)."""
    accounts = _obj(data, "accounts answer").get("accounts")
    if not isinstance(accounts, list):
        raise ParseError("coinbase accounts answer must hold an 'accounts' list")
    for item in accounts:
        account = _obj(item, "account")
        asset = text_field(account, "currency", "account").upper()
        free = decimal_field(_obj(account.get("available_balance"), "available_balance"), "value", "account")
        hold = account.get("hold")
        locked = (
            decimal_field(hold, "value", "account", default=_ZERO) if isinstance(hold, Mapping) else _ZERO
        )
        known = into.get(asset)
        if known is not None:
            free, locked = free + known.free, locked + known.locked
        into[asset] = AccountBalance(asset, free, locked)


def parse_product(data: Any, symbol: str) -> tuple[SymbolRules, tuple[str, ...]]:
    """Parse get-product into the symbol's rules and every product id the venue may report it under."""
    product = _obj(data, "product")
    product_id = text_field(product, "product_id", "product")
    base, quote = split_symbol(symbol)
    status = str(product.get("status") or "").lower()
    blocked = any(product.get(flag) is True for flag in _BLOCKING_FLAGS)
    tick = decimal_field(product, "price_increment", "product", default=_ZERO) or decimal_field(
        product, "quote_increment", "product"
    )
    rules = SymbolRules(
        venue_symbol=product_id,
        base_asset=str(product.get("base_currency_id") or base).upper(),
        quote_asset=str(product.get("quote_currency_id") or quote).upper(),
        tradable=status == "online" and not blocked,
        tick_size=tick,
        step_size=decimal_field(product, "base_increment", "product"),
        min_qty=decimal_field(product, "base_min_size", "product", default=_ZERO),
        max_qty=decimal_field(product, "base_max_size", "product", default=_ZERO),
        min_notional=decimal_field(product, "quote_min_size", "product", default=_ZERO),
        max_notional=decimal_field(product, "quote_max_size", "product", default=_ZERO),
    )
    aliases = [product_id]
    for name in (product.get("alias"), *(product.get("alias_to") or ())):
        if isinstance(name, str) and name and name not in aliases:
            aliases.append(name)
    return rules, tuple(aliases)


# An IOC limit order is refused in any of these modes (post-only rejects a taker order).
_BLOCKING_FLAGS: Final = (
    "trading_disabled",
    "cancel_only",
    "post_only",
    "is_disabled",
    "view_only",
    "auction_mode",
)


def parse_taker_fee_bps(data: Any) -> Decimal | None:
    """Return the account's taker fee in bps from transaction_summary's `fee_tier`, or None."""
    tier = _obj(data, "transaction summary").get("fee_tier")
    if not isinstance(tier, Mapping) or tier.get("taker_fee_rate") in (None, ""):
        return None
    return decimal_field(tier, "taker_fee_rate", "fee_tier") * BPS


def parse_server_time_ms(data: Any) -> float:
    """Return the server time in milliseconds from `{"iso", "epochSeconds", "epochMillis"}`."""
    answer = _obj(data, "time")
    for key, scale in (("epochMillis", 1), ("epochSeconds", 1000)):
        if answer.get(key) not in (None, ""):
            return float(decimal_field(answer, key, "time") * scale)
    raise ParseError("coinbase time answer has neither epochMillis nor epochSeconds")


def side_name(side: Side) -> str:
    """Return Coinbase's side word."""
    return "BUY" if side == "buy" else "SELL"
