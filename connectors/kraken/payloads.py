"""Kraken spot REST payloads mapped to the trading seam's values (`connectors.trading`).

Kraken names assets two ways: legacy four-letter codes with an X/Z class
prefix (`XXBT`, `ZUSD`, `XETH`) and plain ones (`USDT`, `SOL`); bitcoin is
`XBT` and dogecoin `XDG`. Canonical symbols use BTC and DOGE, so `BTC-USDT`
is the pair Kraken keys `XBTUSDT` (altname `XBTUSDT`, wsname `XBT/USDT`) and
`BTC-USD` is `XXBTZUSD` (altname `XBTUSD`). `parse_asset_pairs` reads those
names from Kraken's own `AssetPairs` rather than guessing them.

Answers (docs.kraken.com/api/docs/rest-api/...):

    AssetPairs  {"XXBTZUSD": {"altname": "XBTUSD", "wsname": "XBT/USD", "base": "XXBT",
                 "quote": "ZUSD", "pair_decimals": 1, "lot_decimals": 8, "ordermin": "0.0001",
                 "costmin": "0.5", "tick_size": "0.1", "status": "online", ...}}
    order info  {"cl_ord_id": "…", "status": "closed", "opentm": 1705260547.472,
                 "descr": {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "37500.0"},
                 "vol": "1.25", "vol_exec": "1.25", "cost": "46875.0", "fee": "121.875",
                 "price": "37500.0", "oflags": "fciq", "trades": ["TWA6QJ-ZO4EM-6QIHQJ"]}
    QueryTrades {"TWA6QJ-ZO4EM-6QIHQJ": {"ordertxid": "…", "pair": "XXBTZUSD", "time": 1705260547.47,
                 "type": "buy", "price": "37500.0", "cost": "46875.0", "fee": "121.875",
                 "vol": "1.25", ...}}
    BalanceEx   {"ZUSD": {"balance": "25435.21", "hold_trade": "8249.76"}, ...}
    TradeVolume {"currency": "ZUSD", "volume": "…", "fees": {"XXBTZUSD": {"fee": "0.2600", ...}}}

A trade carries no fee currency: it is the order's `oflags` choice (`fciq`
quote, `fcib` base), and without either Kraken's default, "fcib … (default if
selling), fciq … (default if buying)" (AddOrder `oflags`). This client sends
`fciq` on every order, so fees come in the quote currency.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from connectors.errors import ParseError
from connectors.trading import AccountBalance, OrderReport, SymbolRules, TradeFill
from connectors.types import Side

OPEN_STATUSES: Final = frozenset({"pending", "open"})
TRADABLE_STATUSES: Final = frozenset({"online", "limit_only"})
_RENAMED: Final = {"XBT": "BTC", "XDG": "DOGE"}
_LEGACY: Final = frozenset(
    {"XETC", "XETH", "XLTC", "XMLN", "XREP", "XXBT", "XXDG", "XXLM", "XXMR", "XXRP", "XZEC",
     "ZAUD", "ZCAD", "ZEUR", "ZGBP", "ZJPY", "ZUSD"}
)  # fmt: skip
_BPS_PER_PERCENT: Final = Decimal(100)


@dataclass(frozen=True, slots=True)
class KrakenPair:
    """One Kraken pair: its names (key for results, altname for requests) and its trading rules."""

    symbol: str
    key: str
    altname: str
    rules: SymbolRules


def decode(body: bytes) -> Any:
    """Decode a JSON body with every non-integer number as a Decimal; raise ParseError."""
    try:
        return json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise ParseError(f"kraken: answer is not JSON ({exc})") from None


def asset_name(code: str) -> str:
    """Return the canonical name of a Kraken asset code (`XXBT` → `BTC`, `ZUSD` → `USD`, `SOL` → `SOL`)."""
    upper = code.upper()
    if upper in _LEGACY:
        upper = upper[1:]
    return _RENAMED.get(upper, upper)


def number(value: object, name: str) -> Decimal:
    """Return a finite, non-negative Decimal from a Kraken string or number."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ParseError(f"kraken: {name} must be a decimal string, got {value!r}")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise ParseError(f"kraken: {name} is not a decimal: {value!r}") from None
    if not result.is_finite() or result < 0:
        raise ParseError(f"kraken: {name} must be finite and not negative, got {value!r}")
    return result


def _field(data: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in data:
        raise ParseError(f"kraken {where}: missing {name!r}")
    return data[name]


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ParseError(f"kraken {where}: expected an object, got {type(value).__name__}")
    return value


def parse_asset_pairs(result: object) -> dict[str, KrakenPair]:
    """Return every spot pair of an `AssetPairs` result by canonical symbol (`BTC-USD`)."""
    pairs: dict[str, KrakenPair] = {}
    for key, raw in _mapping(result, "AssetPairs").items():
        info = _mapping(raw, f"AssetPairs {key}")
        wsname = str(info.get("wsname", ""))
        base, slash, quote = wsname.partition("/")
        if not slash:
            continue  # not a spot pair with a base/quote name (e.g. an index)
        symbol = f"{asset_name(base)}-{asset_name(quote)}"
        pairs[symbol] = KrakenPair(symbol, key, str(_field(info, "altname", key)), _rules(key, info))
    return pairs


def _rules(key: str, info: Mapping[str, Any]) -> SymbolRules:
    where = f"AssetPairs {key}"
    pair_decimals = int(_field(info, "pair_decimals", where))
    lot_decimals = int(_field(info, "lot_decimals", where))
    tick = info.get("tick_size")
    return SymbolRules(
        venue_symbol=str(_field(info, "altname", where)),
        base_asset=asset_name(str(_field(info, "base", where))),
        quote_asset=asset_name(str(_field(info, "quote", where))),
        tradable=info.get("status", "online") in TRADABLE_STATUSES,
        tick_size=number(tick, f"{where} tick_size")
        if tick is not None
        else Decimal(1).scaleb(-pair_decimals),
        step_size=Decimal(1).scaleb(-lot_decimals),
        min_qty=number(info.get("ordermin", "0"), f"{where} ordermin"),
        min_notional=number(info.get("costmin", "0"), f"{where} costmin"),
    )


def parse_order(txid: str, raw: object, symbol: str, fills: tuple[TradeFill, ...] = ()) -> OrderReport:
    """Map one Kraken order-info object (OpenOrders, ClosedOrders, QueryOrders) to an OrderReport."""
    where = f"order {txid}"
    info = _mapping(raw, where)
    descr = _mapping(_field(info, "descr", where), f"{where} descr")
    side = descr.get("type")
    if side not in ("buy", "sell"):
        raise ParseError(f"kraken {where}: descr.type must be buy or sell, got {side!r}")
    status = str(_field(info, "status", where))
    opened = info.get("opentm")
    return OrderReport(
        symbol=symbol,
        venue_order_id=txid,
        client_order_id=str(info.get("cl_ord_id") or ""),
        side=side,
        status=status,
        is_open=status in OPEN_STATUSES,
        price=number(descr.get("price", "0"), f"{where} descr.price"),
        orig_qty=number(_field(info, "vol", where), f"{where} vol"),
        executed_qty=number(_field(info, "vol_exec", where), f"{where} vol_exec"),
        cumulative_quote_qty=number(_field(info, "cost", where), f"{where} cost"),
        time_ms=None if opened is None else int(number(opened, f"{where} opentm") * 1000),
        fills=fills,
    )


def trade_ids(raw: object) -> tuple[str, ...]:
    """Return the trade ids an order-info object lists (asked for with `trades=true`)."""
    trades = _mapping(raw, "order").get("trades") or []
    if not isinstance(trades, list):
        raise ParseError("kraken order: trades must be a list")
    return tuple(str(t) for t in trades)


def fee_asset(raw: object, side: Side, rules: SymbolRules) -> str:
    """Return the asset an order's fees are charged in, from its `oflags` (see the module docstring)."""
    flags = str(_mapping(raw, "order").get("oflags") or "").split(",")
    if "fciq" in flags:
        return rules.quote_asset
    if "fcib" in flags:
        return rules.base_asset
    return rules.base_asset if side == "sell" else rules.quote_asset


def parse_trades(result: object, order_txid: str, fee_asset_name: str) -> tuple[TradeFill, ...]:
    """Return the trades of `order_txid` in a `QueryTrades` result, oldest first."""
    fills = []
    for trade_id, raw in _mapping(result, "QueryTrades").items():
        trade = _mapping(raw, f"trade {trade_id}")
        if trade.get("ordertxid") != order_txid:
            continue
        where = f"trade {trade_id}"
        fills.append(
            TradeFill(
                trade_id=str(trade_id),
                price=number(_field(trade, "price", where), f"{where} price"),
                quantity=number(_field(trade, "vol", where), f"{where} vol"),
                fee=number(_field(trade, "fee", where), f"{where} fee"),
                fee_asset=fee_asset_name,
                time_ms=int(number(_field(trade, "time", where), f"{where} time") * 1000),
            )
        )
    return tuple(sorted(fills, key=lambda f: (f.time_ms or 0, f.trade_id)))


def parse_balances(result: object) -> dict[str, AccountBalance]:
    """Return `BalanceEx` spot balances by canonical asset: free = balance − hold_trade.

    Codes with a suffix (`XBT.F`, `DOT.S`: earn and staking balances) are not
    spot-tradable and are left out.
    """
    balances: dict[str, AccountBalance] = {}
    for code, raw in _mapping(result, "BalanceEx").items():
        if "." in code:
            continue
        entry = _mapping(raw, f"BalanceEx {code}")
        total = number(_field(entry, "balance", f"BalanceEx {code}"), f"BalanceEx {code} balance")
        held = number(entry.get("hold_trade", "0"), f"BalanceEx {code} hold_trade")
        held = min(held, total)
        balances[asset_name(code)] = AccountBalance(asset_name(code), total - held, held)
    return balances


def parse_taker_fee_bps(result: object, pair: KrakenPair) -> Decimal | None:
    """Return the taker fee of `pair` in bps from a `TradeVolume` result (Kraken gives percent)."""
    fees = _mapping(result, "TradeVolume").get("fees") or {}
    entry = _mapping(fees, "TradeVolume fees").get(pair.key) or fees.get(pair.altname)
    if entry is None:
        return None
    fee = _field(_mapping(entry, "TradeVolume fee"), "fee", "TradeVolume fee")
    return number(fee, f"TradeVolume {pair.key} fee") * _BPS_PER_PERCENT


def first_txid(result: object) -> str | None:
    """Return the order id of an AddOrder result (`{"txid": ["O…"], "descr": …}`), or None."""
    txids = result.get("txid") if isinstance(result, dict) else None
    if isinstance(txids, list) and txids and isinstance(txids[0], str) and txids[0]:
        return txids[0]
    return None


def mapping_of(result: object, key: str) -> dict[str, Any]:
    """Return `result[key]` (OpenOrders' `open`, ClosedOrders' `closed`); raise ParseError if absent."""
    found = result.get(key) if isinstance(result, dict) else None
    if not isinstance(found, dict):
        raise ParseError(f"kraken: the answer has no {key!r} object")
    return found


def pair_of(info: object) -> str:
    """Return the pair (altname) an order-info object names in its `descr`, or ""."""
    descr = info.get("descr") if isinstance(info, dict) else None
    return str(descr.get("pair", "")) if isinstance(descr, dict) else ""


def latest_with_client_id(
    result: object, key: str, client_order_id: str, pair: KrakenPair, txid: str | None
) -> tuple[str, dict[str, Any]] | None:
    """Return the most recently opened (txid, info) in `result[key]` with this client id on this pair.

    Kraken filtered by `cl_ord_id` already; checking again keeps a stray answer from
    settling another order. With `txid`, only that order counts.
    """
    matches = [
        (found_txid, info)
        for found_txid, info in mapping_of(result, key).items()
        if isinstance(info, dict)
        and info.get("cl_ord_id") == client_order_id
        and txid in (None, found_txid)
        and pair_of(info) in (pair.altname, pair.key)
    ]
    if not matches:
        return None
    return max(matches, key=lambda item: _opened(item[1]))


def _opened(info: dict[str, Any]) -> Decimal:
    try:
        return number(info.get("opentm", 0), "opentm")
    except ParseError:
        return Decimal(0)


def whole_order_fill(info: object, report: OrderReport, asset: str) -> tuple[TradeFill, ...]:
    """Return an order's totals as one fill, with its exact total fee, for when its trades are not listed."""
    if report.executed_qty <= 0 or report.average_price is None:
        return ()
    fee = number(_mapping(info, "order").get("fee", "0"), f"order {report.venue_order_id} fee")
    fill = TradeFill(
        report.venue_order_id, report.average_price, report.executed_qty, fee, asset, report.time_ms
    )
    return (fill,)
