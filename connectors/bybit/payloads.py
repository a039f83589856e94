"""Pure parsers of Bybit v5 REST answers into the trading seam's values (`connectors.trading`).

Every answer is the envelope of `docs/v5/guide.mdx` ("Common response parameters")::

    {"retCode": 0, "retMsg": "OK", "result": {...}, "retExtInfo": {}, "time": 1672211918471}

Orders (`/v5/order/realtime`, `/v5/order/history`) carry `orderId`,
`orderLinkId`, `symbol`, `side` (`Buy`/`Sell`), `orderStatus`, `price`, `qty`,
`cumExecQty`, `cumExecValue`, `avgPrice`, `createdTime`; executions
(`/v5/execution/list`) `execId`, `execPrice`, `execQty`, `execFee`,
`feeCurrency`, `isMaker`, `feeRate`, `execTime`; spot instruments
(`/v5/market/instruments-info`) `lotSizeFilter.basePrecision` (the lot step),
`minOrderQty`, `minOrderAmt`, `maxLimitOrderQty` and `priceFilter.tickSize`.
Anything malformed raises ParseError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import orjson

from connectors.errors import ParseError
from connectors.trading import AccountBalance, OrderReport, SymbolRules, TradeFill
from connectors.types import Side

# docs/v5/enum.mdx orderStatus: these can still trade; every other status is final.
OPEN_STATUSES: Final = frozenset({"New", "PartiallyFilled", "Untriggered"})
_SIDES: Final[dict[str, Side]] = {"Buy": "buy", "Sell": "sell"}
_ZERO = Decimal(0)


def envelope(body: bytes) -> tuple[int, str, Any]:
    """Return (retCode, retMsg, result) of an answer; raise ParseError if it is not the envelope."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ParseError("bybit answer is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("retCode"), int):
        raise ParseError("bybit answer has no integer retCode")
    return data["retCode"], str(data.get("retMsg", "")), data.get("result")


def result_list(result: Any, what: str) -> list[dict[str, Any]]:
    """Return `result.list` as a list of objects."""
    items = result.get("list") if isinstance(result, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ParseError(f"bybit {what}: result.list must be a list of objects")
    return items


def next_cursor(result: Any) -> str:
    """Return `result.nextPageCursor`, empty when there is no further page."""
    cursor = result.get("nextPageCursor") if isinstance(result, dict) else None
    return cursor if isinstance(cursor, str) else ""


def server_time_ms(result: Any) -> float:
    """Return the server time of `/v5/market/time` in ms (from `timeNano`, else `timeSecond`)."""
    if isinstance(result, dict):
        if isinstance(result.get("timeNano"), str) and result["timeNano"].isdigit():
            return int(result["timeNano"]) / 1_000_000
        if isinstance(result.get("timeSecond"), str) and result["timeSecond"].isdigit():
            return int(result["timeSecond"]) * 1000.0
    raise ParseError("bybit server time: result needs timeNano or timeSecond")


def parse_order(item: Mapping[str, Any], canonical: Callable[[str], str]) -> OrderReport:
    """Map one order object to an OrderReport; `canonical` maps `BTCUSDT` to `BTC-USDT`."""
    side = _SIDES.get(str(item.get("side")))
    if side is None:
        raise ParseError(f"bybit order: side must be Buy or Sell, got {item.get('side')!r}")
    status = _text(item, "orderStatus")
    executed = _decimal(item, "cumExecQty")
    value = _optional_decimal(item, "cumExecValue")
    if value is None:  # classic spot has no cumExecValue: the average price times the quantity
        value = executed * (_optional_decimal(item, "avgPrice") or _ZERO)
    return OrderReport(
        symbol=canonical(_text(item, "symbol")),
        venue_order_id=_text(item, "orderId"),
        client_order_id=str(item.get("orderLinkId", "")),
        side=side,
        status=status,
        is_open=status in OPEN_STATUSES,
        price=_decimal(item, "price"),
        orig_qty=_decimal(item, "qty"),
        executed_qty=executed,
        cumulative_quote_qty=value,
        time_ms=_int(item.get("createdTime")),
    )


def parse_execution(item: Mapping[str, Any], base: str, quote: str) -> TradeFill:
    """Map one execution to a TradeFill; an empty `feeCurrency` follows the documented spot rule.

    `docs/v5/enum.mdx` "Spot Fee Currency Instruction": with a non-negative fee
    rate a buyer pays in the base asset and a seller in the quote asset; a maker
    with a negative (rebate) rate the other way round.
    """
    fee_asset = str(item.get("feeCurrency") or "")
    if not fee_asset:
        buy = item.get("side") == "Buy"
        rebate = item.get("isMaker") is True and (_optional_decimal(item, "feeRate") or _ZERO) < 0
        fee_asset = base if buy != rebate else quote
    return TradeFill(
        trade_id=_text(item, "execId"),
        price=_decimal(item, "execPrice"),
        quantity=_decimal(item, "execQty"),
        fee=_decimal(item, "execFee"),
        fee_asset=fee_asset.upper(),
        time_ms=_int(item.get("execTime")),
    )


def parse_balances(result: Any) -> dict[str, AccountBalance]:
    """Map `/v5/account/wallet-balance` to balances: free = walletBalance - locked (spot open orders)."""
    balances: dict[str, AccountBalance] = {}
    for account in result_list(result, "wallet balance"):
        coins = account.get("coin")
        if not isinstance(coins, list):
            raise ParseError("bybit wallet balance: coin must be a list")
        for coin in coins:
            if not isinstance(coin, dict):
                raise ParseError("bybit wallet balance: each coin must be an object")
            wallet = _decimal(coin, "walletBalance")
            locked = _optional_decimal(coin, "locked") or _ZERO
            asset = _text(coin, "coin").upper()
            balances[asset] = AccountBalance(asset, max(_ZERO, wallet - locked), locked)
    return balances


def parse_instrument(item: Mapping[str, Any]) -> SymbolRules:
    """Map one spot instrument to its rules (lot step = basePrecision)."""
    lot, price = item.get("lotSizeFilter"), item.get("priceFilter")
    if not isinstance(lot, dict) or not isinstance(price, dict):
        raise ParseError("bybit instrument: lotSizeFilter and priceFilter must be objects")
    max_qty = _optional_decimal(lot, "maxLimitOrderQty") or _optional_decimal(lot, "maxOrderQty")
    return SymbolRules(
        venue_symbol=_text(item, "symbol"),
        base_asset=_text(item, "baseCoin"),
        quote_asset=_text(item, "quoteCoin"),
        tradable=item.get("status") == "Trading",
        tick_size=_decimal(price, "tickSize"),
        step_size=_decimal(lot, "basePrecision"),
        min_qty=_optional_decimal(lot, "minOrderQty") or _ZERO,
        max_qty=max_qty or _ZERO,
        min_notional=_optional_decimal(lot, "minOrderAmt") or _ZERO,
    )


def parse_taker_fee_bps(result: Any, venue_symbol: str) -> Decimal | None:
    """Return the `takerFeeRate` of `venue_symbol` in bps, or None when the answer has no such row."""
    for item in result_list(result, "fee rate"):
        if item.get("symbol") in (venue_symbol, "", None):
            return _decimal(item, "takerFeeRate") * 10_000
    return None


def _text(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise ParseError(f"bybit answer: {name!r} must be a non-empty string, got {value!r}")
    return value


def _decimal(item: Mapping[str, Any], name: str) -> Decimal:
    number = _optional_decimal(item, name)
    if number is None:
        raise ParseError(f"bybit answer: {name!r} is missing or empty")
    return number


def _optional_decimal(item: Mapping[str, Any], name: str) -> Decimal | None:
    value = item.get(name)
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ParseError(f"bybit answer: {name!r} is not a number: {value!r}") from None
    if not number.is_finite():
        raise ParseError(f"bybit answer: {name!r} is not finite: {value!r}")
    return number


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
