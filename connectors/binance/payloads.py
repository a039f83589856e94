"""Binance REST answers as the project's values: pure parsers that raise only ParseError.

Each parser quotes the documented payload (binance-spot-api-docs `rest-api.md`)
it reads. Symbols come back canonical (`BTC-USDT`): the caller names the
symbol it asked about, and the parser checks the answer is about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from connectors.base import decimal_of, field, levels_of, signed_decimal_of
from connectors.errors import ParseError
from connectors.symbols import to_concatenated
from connectors.types import Quote, Side

OPEN_STATUSES: Final = frozenset({"NEW", "PARTIALLY_FILLED", "PENDING_NEW"})
FINAL_STATUSES: Final = frozenset({"FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED"})
_NS_PER_MS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class TradeFill:
    """One trade of an order: price, quantity and the commission the venue charged for it."""

    trade_id: int
    price: Decimal
    quantity: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int | None


@dataclass(frozen=True, slots=True)
class OrderReport:
    """What Binance says about one order (a placement answer or a query)."""

    symbol: str
    order_id: int
    client_order_id: str
    side: Side
    order_type: str
    time_in_force: str
    status: str
    price: Decimal
    orig_qty: Decimal
    executed_qty: Decimal
    cumulative_quote_qty: Decimal
    time_ms: int | None
    fills: tuple[TradeFill, ...] = ()

    @property
    def is_open(self) -> bool:
        """Return True while the order can still trade (it rests on the book)."""
        return self.status in OPEN_STATUSES

    @property
    def is_final(self) -> bool:
        """Return True once the order can never trade again."""
        return self.status in FINAL_STATUSES

    @property
    def average_price(self) -> Decimal | None:
        """Return the average execution price, or None when nothing executed."""
        if self.executed_qty <= 0:
            return None
        return self.cumulative_quote_qty / self.executed_qty


@dataclass(frozen=True, slots=True)
class Balance:
    """One asset of the spot account."""

    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        """Return free plus locked."""
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class Kline:
    """One candlestick; times in milliseconds since the epoch."""

    open_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    close_time_ms: int
    quote_volume: Decimal
    trades: int


@dataclass(frozen=True, slots=True)
class Ticker24h:
    """Rolling 24-hour statistics of one symbol."""

    symbol: str
    last_price: Decimal
    price_change: Decimal
    price_change_pct: Decimal
    open: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal
    quote_volume: Decimal
    bid: Decimal
    ask: Decimal
    open_time_ms: int
    close_time_ms: int
    trades: int


def parse_order(payload: object, symbol: str) -> OrderReport:
    """Parse a FULL/RESULT placement answer or an order query; `fills` only come with FULL::

        {"symbol": "BTCUSDT", "orderId": 28, "orderListId": -1, "clientOrderId": "6gCrw2kRUAF9CvJDGP16IP",
         "transactTime": 1507725176595, "price": "0.00000000", "origQty": "10.00000000",
         "executedQty": "10.00000000", "cummulativeQuoteQty": "10.00000000", "status": "FILLED",
         "timeInForce": "GTC", "type": "MARKET", "side": "SELL",
         "fills": [{"price": "4000.00000000", "qty": "1.00000000", "commission": "4.00000000",
                    "commissionAsset": "USDT", "tradeId": 56}]}

    A query answer has `time`/`updateTime` instead of `transactTime` and no `fills`.
    """
    data = _object(payload, symbol, "order")
    where = f"binance order {data.get('clientOrderId')!r}"
    side = field(data, "side", str, where)
    if side not in ("BUY", "SELL"):
        raise ParseError(f"{where}: unknown side {side!r}")
    fills = tuple(_trade(item, where) for item in _list(data.get("fills", []), f"{where} fills"))
    time_ms = data.get("transactTime", data.get("updateTime", data.get("time")))
    return OrderReport(
        symbol=symbol,
        order_id=field(data, "orderId", int, where),
        client_order_id=field(data, "clientOrderId", str, where),
        side="buy" if side == "BUY" else "sell",
        order_type=field(data, "type", str, where),
        time_in_force=field(data, "timeInForce", str, where),
        status=field(data, "status", str, where),
        price=decimal_of(data.get("price"), f"{where} price"),
        orig_qty=decimal_of(data.get("origQty"), f"{where} origQty"),
        executed_qty=decimal_of(data.get("executedQty"), f"{where} executedQty"),
        cumulative_quote_qty=decimal_of(data.get("cummulativeQuoteQty"), f"{where} cummulativeQuoteQty"),
        time_ms=time_ms if isinstance(time_ms, int) and not isinstance(time_ms, bool) else None,
        fills=fills,
    )


def parse_commission(payload: object, symbol: str) -> Decimal:
    """Parse `GET /api/v3/account/commission` into the taker rate (standard + tax), a fraction::

    {"symbol": "BTCUSDT",
     "standardCommission": {"maker": "0.00000010", "taker": "0.00000020", "buyer": "0.00000030",
                            "seller": "0.00000040"},
     "taxCommission": {"maker": "0.00000112", "taker": "0.00000114", "buyer": "0.00000118",
                       "seller": "0.00000116"},
     "discount": {"enabledForAccount": true, "enabledForSymbol": true, "discountAsset": "BNB",
                  "discount": "0.75000000"}}
    """
    data = _object(payload, symbol, "commission")
    total = Decimal(0)
    for part in ("standardCommission", "taxCommission"):
        rates = data.get(part)
        if not isinstance(rates, dict):
            raise ParseError(f"binance commission {symbol}: {part} must be an object")
        total += decimal_of(rates.get("taker"), f"binance commission {symbol} {part}.taker")
    return total


def parse_trades(payload: object, symbol: str) -> tuple[TradeFill, ...]:
    """Parse `GET /api/v3/myTrades`::

    [{"symbol": "BNBBTC", "id": 28457, "orderId": 100234, "orderListId": -1, "price": "4.00000100",
      "qty": "12.00000000", "quoteQty": "48.000012", "commission": "10.10000000",
      "commissionAsset": "BNB", "time": 1499865549590, "isBuyer": true, "isMaker": false,
      "isBestMatch": true}]
    """
    trades = []
    for item in _list(payload, "binance myTrades"):
        data = _object(item, symbol, "myTrades")
        where = f"binance trade {data.get('id')!r}"
        trades.append(
            TradeFill(
                trade_id=field(data, "id", int, where),
                price=decimal_of(data.get("price"), f"{where} price"),
                quantity=decimal_of(data.get("qty"), f"{where} qty"),
                commission=decimal_of(data.get("commission"), f"{where} commission"),
                commission_asset=field(data, "commissionAsset", str, where),
                time_ms=field(data, "time", int, where),
            )
        )
    return tuple(trades)


def parse_book_ticker(payload: object, symbol: str, received_ns: int) -> Quote:
    """Parse `GET /api/v3/ticker/bookTicker?symbol=`::

    {"symbol": "LTCBTC", "bidPrice": "4.00000000", "bidQty": "431.00000000",
     "askPrice": "4.00000200", "askQty": "9.00000000"}
    """
    data = _object(payload, symbol, "bookTicker")
    where = f"binance bookTicker {symbol}"
    return Quote(
        venue="binance",
        symbol=symbol,
        bid=decimal_of(data.get("bidPrice"), f"{where} bidPrice"),
        bid_qty=decimal_of(data.get("bidQty"), f"{where} bidQty"),
        ask=decimal_of(data.get("askPrice"), f"{where} askPrice"),
        ask_qty=decimal_of(data.get("askQty"), f"{where} askQty"),
        exchange_ns=None,
        received_ns=received_ns,
        seq=None,
    )


def parse_depth(payload: object, symbol: str, received_ns: int) -> Quote:
    """Parse `GET /api/v3/depth` into a quote with its levels (`seq` = `lastUpdateId`)::

    {"lastUpdateId": 1027024, "bids": [["4.00000000", "431.00000000"]],
     "asks": [["4.00000200", "12.00000000"]]}
    """
    if not isinstance(payload, dict):
        raise ParseError(f"binance depth {symbol}: answer must be an object")
    where = f"binance depth {symbol}"
    bids = tuple(levels_of(payload.get("bids"), f"{where} bids"))
    asks = tuple(levels_of(payload.get("asks"), f"{where} asks"))
    if not bids or not asks:
        raise ParseError(f"{where}: a side of the book is empty")
    return Quote(
        venue="binance",
        symbol=symbol,
        bid=bids[0][0],
        bid_qty=bids[0][1],
        ask=asks[0][0],
        ask_qty=asks[0][1],
        exchange_ns=None,
        received_ns=received_ns,
        seq=field(payload, "lastUpdateId", int, where),
        bids=bids,
        asks=asks,
    )


def parse_ticker_24h(payload: object, symbol: str) -> Ticker24h:
    """Parse `GET /api/v3/ticker/24hr?symbol=` (FULL)::

    {"symbol": "BNBBTC", "priceChange": "-94.99999800", "priceChangePercent": "-95.960",
     "lastPrice": "4.00000200", "bidPrice": "4.00000000", "askPrice": "4.00000200",
     "openPrice": "99.00000000", "highPrice": "100.00000000", "lowPrice": "0.10000000",
     "volume": "8913.30000000", "quoteVolume": "15.30000000", "openTime": 1499783499040,
     "closeTime": 1499869899040, "firstId": 28385, "lastId": 28460, "count": 76, ...}
    """
    data = _object(payload, symbol, "24hr ticker")
    where = f"binance 24hr ticker {symbol}"
    return Ticker24h(
        symbol=symbol,
        last_price=decimal_of(data.get("lastPrice"), f"{where} lastPrice"),
        price_change=signed_decimal_of(data.get("priceChange"), f"{where} priceChange"),
        price_change_pct=signed_decimal_of(data.get("priceChangePercent"), f"{where} priceChangePercent"),
        open=decimal_of(data.get("openPrice"), f"{where} openPrice"),
        high=decimal_of(data.get("highPrice"), f"{where} highPrice"),
        low=decimal_of(data.get("lowPrice"), f"{where} lowPrice"),
        volume=decimal_of(data.get("volume"), f"{where} volume"),
        quote_volume=decimal_of(data.get("quoteVolume"), f"{where} quoteVolume"),
        bid=decimal_of(data.get("bidPrice"), f"{where} bidPrice"),
        ask=decimal_of(data.get("askPrice"), f"{where} askPrice"),
        open_time_ms=field(data, "openTime", int, where),
        close_time_ms=field(data, "closeTime", int, where),
        trades=field(data, "count", int, where),
    )


def parse_klines(payload: object, symbol: str) -> list[Kline]:
    """Parse `GET /api/v3/klines`: one array per candle::

    [[1499040000000, "0.01634790", "0.80000000", "0.01575800", "0.01577100", "148976.11427815",
      1499644799999, "2434.19055334", 308, "1756.87402397", "28.46694368", "0"]]
    """
    klines = []
    for row in _list(payload, f"binance klines {symbol}"):
        if not isinstance(row, list) or len(row) < 9:
            raise ParseError(f"binance klines {symbol}: each candle must be an array of 12, got {row!r}")
        where = f"binance kline {symbol} {row[0]!r}"
        numbers = [decimal_of(row[i], f"{where} [{i}]") for i in (1, 2, 3, 4, 5, 7)]
        times = [row[0], row[6], row[8]]
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in times):
            raise ParseError(f"{where}: open time, close time and trade count must be integers")
        open_, high, low, close, volume, quote_volume = numbers
        klines.append(Kline(times[0], open_, high, low, close, volume, times[1], quote_volume, times[2]))
    return klines


def parse_account(payload: object) -> dict[str, Balance]:
    """Parse the balances of `GET /api/v3/account`, keeping assets with a non-zero total::

    {"makerCommission": 15, ..., "accountType": "SPOT",
     "balances": [{"asset": "BTC", "free": "4723846.89208129", "locked": "0.00000000"}, ...]}
    """
    if not isinstance(payload, dict):
        raise ParseError("binance account: answer must be an object")
    balances = {}
    for item in _list(payload.get("balances"), "binance account balances"):
        if not isinstance(item, dict):
            raise ParseError(f"binance account: balance must be an object, got {item!r}")
        asset = field(item, "asset", str, "binance account balance")
        balance = Balance(
            asset,
            decimal_of(item.get("free"), f"binance balance {asset} free"),
            decimal_of(item.get("locked"), f"binance balance {asset} locked"),
        )
        if balance.total:
            balances[asset] = balance
    return balances


def ts_ns(time_ms: int | None, fallback_ns: int) -> int:
    """Return a venue time in ms as ns since the epoch, or `fallback_ns` when the venue gave none."""
    return fallback_ns if time_ms is None else time_ms * _NS_PER_MS


def _trade(item: object, where: str) -> TradeFill:
    if not isinstance(item, dict):
        raise ParseError(f"{where}: fill must be an object, got {item!r}")
    return TradeFill(
        trade_id=field(item, "tradeId", int, f"{where} fill"),
        price=decimal_of(item.get("price"), f"{where} fill price"),
        quantity=decimal_of(item.get("qty"), f"{where} fill qty"),
        commission=decimal_of(item.get("commission"), f"{where} fill commission"),
        commission_asset=field(item, "commissionAsset", str, f"{where} fill"),
        time_ms=None,
    )


def _object(payload: object, symbol: str, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ParseError(f"binance {what} {symbol}: answer must be an object, got {type(payload).__name__}")
    venue_symbol = to_concatenated(symbol)
    if payload.get("symbol") != venue_symbol:
        raise ParseError(f"binance {what}: answer is about {payload.get('symbol')!r}, not {venue_symbol!r}")
    return payload


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ParseError(f"{where}: must be a list, got {type(value).__name__}")
    return value
