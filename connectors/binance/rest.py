"""BinanceConnector: the Binance Spot REST endpoints on python-binance's `AsyncClient`.

Market data (klines, 24 h and book tickers, order-book snapshots), the account
(balances, commission, open orders) and orders (place, query, cancel, test) —
answers mapped to the project's values, failures to `connectors.binance.errors`.
Each call goes through its `BinanceSession` (`connectors.binance.session`): the
rate limiter, the server clock, the exchange rules, the single re-send after a
-1021. An order whose outcome is unknown is for the caller to query
(`OutcomeUnknown`), never re-sent.

`rest_url` is the venue's base (`https://api.binance.com`; the testnet is
`https://testnet.binance.vision`); tests point it at a local fake server.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from connectors.binance.errors import OutcomeUnknown
from connectors.binance.payloads import (
    Balance,
    Kline,
    OrderReport,
    Ticker24h,
    TradeFill,
    parse_account,
    parse_book_ticker,
    parse_commission,
    parse_depth,
    parse_klines,
    parse_order,
    parse_ticker_24h,
    parse_trades,
)
from connectors.binance.session import BinanceSession
from connectors.errors import ParseError
from connectors.symbols import to_concatenated
from connectors.types import Quote, Side, decimal_text

__all__ = ["BinanceConnector"]


class BinanceConnector(BinanceSession):
    """Talk to Binance Spot REST through python-binance, safely under limits, clock skew and faults."""

    # ----- market data -----------------------------------------------------------------------

    async def ping(self) -> None:
        """Check that the REST API answers."""
        client = await self._client_ready()
        await self._call("ping", client.ping, {}, weight=1)

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        limit: int = 500,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Kline]:
        """Return candlesticks of `symbol` (`interval` such as "1m", "1h"), oldest first."""
        client = await self._client_ready()
        params = {"symbol": to_concatenated(symbol), "interval": interval, "limit": limit}
        params |= {k: v for k, v in (("startTime", start_ms), ("endTime", end_ms)) if v is not None}
        return parse_klines(await self._call("klines", client.get_klines, params, weight=2), symbol)

    async def ticker_24h(self, symbol: str) -> Ticker24h:
        """Return the rolling 24-hour statistics of `symbol`."""
        client = await self._client_ready()
        answer = await self._call(
            "24hr ticker", client.get_ticker, {"symbol": to_concatenated(symbol)}, weight=2
        )
        return parse_ticker_24h(answer, symbol)

    async def book_ticker(self, symbol: str) -> Quote:
        """Return the best bid and offer of `symbol` now."""
        client = await self._client_ready()
        params = {"symbol": to_concatenated(symbol)}
        answer = await self._call("book ticker", client.get_orderbook_ticker, params, weight=2)
        return parse_book_ticker(answer, symbol, time.time_ns())

    async def order_book(self, symbol: str, *, limit: int = 100) -> Quote:
        """Return an order-book snapshot of `symbol` (`limit` levels a side) as a quote with depth."""
        client = await self._client_ready()
        weight = 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        params = {"symbol": to_concatenated(symbol), "limit": limit}
        answer = await self._call("order book", client.get_order_book, params, weight=weight)
        return parse_depth(answer, symbol, time.time_ns())

    # ----- account ---------------------------------------------------------------------------

    async def balances(self) -> dict[str, Balance]:
        """Return the spot balances (positions) with a non-zero total, by asset."""
        client = await self._client_ready()
        return parse_account(await self._call("account", client.get_account, {}, weight=20, signed=True))

    async def taker_commission(self, symbol: str) -> Decimal:
        """Return the account's taker commission rate for `symbol` (standard + tax), as a fraction.

        `GET /api/v3/account/commission`; a BNB discount is not counted (the estimate
        errs on the side of a higher fee).
        """
        client = await self._client_ready()
        params = {"symbol": to_concatenated(symbol)}
        answer = await self._call(
            "commission", client.v3_get_account_commission, params, weight=20, signed=True
        )
        return parse_commission(answer, symbol)

    async def open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        """Return the open orders of `symbol`, or of every symbol."""
        client = await self._client_ready()
        params = {} if symbol is None else {"symbol": to_concatenated(symbol)}
        answer = await self._call(
            "open orders", client.get_open_orders, params, weight=6 if symbol else 80, signed=True
        )
        if not isinstance(answer, list):
            raise ParseError("binance openOrders: answer must be a list")
        return [parse_order(item, symbol or self._canonical(str(item.get("symbol")))) for item in answer]

    # ----- orders ----------------------------------------------------------------------------

    async def place_order(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        price: Decimal,
        client_order_id: str,
        *,
        time_in_force: str = "IOC",
    ) -> OrderReport:
        """Place a LIMIT order (IOC by default) under `client_order_id`; return the FULL answer.

        Raise OutcomeUnknown when the order may have been accepted without an answer to show for
        it (timeout, dropped connection, 5xx, -1006, -1007, unreadable 2xx): query it, never re-send.
        """
        client = await self._client_ready()
        params = _order_params(symbol, side, quantity, price, time_in_force)
        params |= {"newClientOrderId": client_order_id, "newOrderRespType": "FULL"}
        answer = await self._call(
            "place order",
            client.create_order,
            params,
            weight=1,
            orders=1,
            signed=True,
            max_wait_s=self.order_max_wait_s,
        )
        try:
            return parse_order(answer, symbol)
        except ParseError as exc:
            raise OutcomeUnknown(
                f"binance accepted order {client_order_id} with an unreadable answer: {exc}"
            ) from exc

    async def test_order(self, symbol: str, side: Side, quantity: Decimal, price: Decimal) -> None:
        """Validate a LIMIT IOC order with Binance (`POST /api/v3/order/test`) without placing it."""
        client = await self._client_ready()
        params = _order_params(symbol, side, quantity, price, "IOC")
        await self._call("test order", client.create_test_order, params, weight=1, signed=True)

    async def query_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Return what Binance knows of the order `client_order_id`; OrderNotFound if nothing."""
        client = await self._client_ready()
        params = {"symbol": to_concatenated(symbol), "origClientOrderId": client_order_id}
        answer = await self._call("query order", client.get_order, params, weight=4, signed=True)
        return parse_order(answer, symbol)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Cancel the open order `client_order_id`; OrderNotFound if it is not open."""
        client = await self._client_ready()
        params = {"symbol": to_concatenated(symbol), "origClientOrderId": client_order_id}
        answer = await self._call("cancel order", client.cancel_order, params, weight=1, signed=True)
        return parse_order(answer, symbol)

    async def order_trades(self, symbol: str, order_id: int) -> tuple[TradeFill, ...]:
        """Return the trades of one order, with the commission charged for each."""
        client = await self._client_ready()
        params = {"symbol": to_concatenated(symbol), "orderId": order_id}
        answer = await self._call("order trades", client.get_my_trades, params, weight=20, signed=True)
        return parse_trades(answer, symbol)


def _order_params(symbol: str, side: Side, quantity: Decimal, price: Decimal, tif: str) -> dict[str, Any]:
    return {
        "symbol": to_concatenated(symbol),
        "side": "BUY" if side == "buy" else "SELL",
        "type": "LIMIT",
        "timeInForce": tif,
        "quantity": decimal_text(quantity),
        "price": decimal_text(price),
    }
