"""Binance on the trading seam: `BinanceConnector` seen as a `connectors.trading.TradingVenue`.

`BinanceConnector` keeps the full REST surface of DESIGN.md (klines, tickers,
account, orders) in Binance's own terms; this adapter maps what the live
executor needs onto the venue-neutral types. The acceptance window is
recvWindow: Binance refuses a request whose timestamp is older than that, so
an order not found once it has passed can no longer appear.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from connectors.binance import payloads
from connectors.binance.facts import FACTS
from connectors.binance.rest import BinanceConnector
from connectors.errors import ParseError, VenueError
from connectors.trading import (
    AccountBalance,
    ClientIdStyle,
    OrderReport,
    SymbolRules,
    TradeFill,
)
from connectors.types import BPS, Side


class BinanceTrading:
    """The live executor's view of Binance Spot, through one `BinanceConnector`."""

    venue: Final = "binance"
    client_id_style: Final[ClientIdStyle] = FACTS.client_id_style

    def __init__(self, connector: BinanceConnector, symbols: tuple[str, ...] = ()) -> None:
        """Trade through `connector`; `symbols` (canonical) bound the open-order scan at start."""
        self.connector = connector
        self.symbols = symbols

    def __repr__(self) -> str:
        return f"BinanceTrading({self.connector!r})"

    @property
    def acceptance_window_ms(self) -> int:
        """Return recvWindow: after it, Binance refuses any copy of an order sent before."""
        return self.connector.recv_window_ms

    async def start(self) -> None:
        """Measure the clock and load the exchange rules."""
        await self.connector.start()

    async def close(self) -> None:
        """Close the REST session; idempotent."""
        await self.connector.close()

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        """Return the symbol's filters as venue-neutral rules."""
        return (await self.connector.symbol_filters(symbol)).rules()

    async def place_order(
        self, symbol: str, side: Side, quantity: Decimal, price: Decimal, client_order_id: str
    ) -> OrderReport:
        """Place an IOC LIMIT order; OutcomeUnknown when its fate is unknown."""
        return report_of(await self.connector.place_order(symbol, side, quantity, price, client_order_id))

    async def query_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Return the order with this client id; OrderNotFound when Binance has none."""
        return report_of(await self.connector.query_order(symbol, client_order_id))

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Cancel the open order with this client id."""
        return report_of(await self.connector.cancel_order(symbol, client_order_id))

    async def order_trades(self, symbol: str, report: OrderReport) -> tuple[TradeFill, ...]:
        """Return the trades of the order, with their commissions."""
        try:
            order_id = int(report.venue_order_id)
        except ValueError as exc:
            raise ParseError(f"binance order id {report.venue_order_id!r} is not a number") from exc
        trades = await self.connector.order_trades(symbol, order_id)
        return tuple(fill_of(trade) for trade in trades)

    async def open_orders(self) -> list[OrderReport]:
        """Return the account's open orders on the configured symbols (every symbol if none)."""
        if not self.symbols:
            return [report_of(o) for o in await self.connector.open_orders()]
        found: list[OrderReport] = []
        for symbol in self.symbols:
            found.extend(report_of(o) for o in await self.connector.open_orders(symbol))
        return found

    async def balances(self) -> dict[str, AccountBalance]:
        """Return the spot balances with a non-zero total."""
        balances = await self.connector.balances()
        return {asset: AccountBalance(asset, b.free, b.locked) for asset, b in balances.items()}

    async def taker_fee_bps(self, symbol: str) -> Decimal | None:
        """Return the account's taker commission for `symbol` (`GET /api/v3/account/commission`)."""
        try:
            rate = await self.connector.taker_commission(symbol)
        except VenueError:
            return None
        return rate * BPS


def report_of(report: payloads.OrderReport) -> OrderReport:
    """Return a Binance order report in venue-neutral terms."""
    return OrderReport(
        symbol=report.symbol,
        venue_order_id=str(report.order_id),
        client_order_id=report.client_order_id,
        side=report.side,
        status=report.status,
        is_open=report.is_open,
        price=report.price,
        orig_qty=report.orig_qty,
        executed_qty=report.executed_qty,
        cumulative_quote_qty=report.cumulative_quote_qty,
        time_ms=report.time_ms,
        fills=tuple(fill_of(trade) for trade in report.fills),
    )


def fill_of(trade: payloads.TradeFill) -> TradeFill:
    """Return one Binance trade (or FULL-answer fill) in venue-neutral terms."""
    return TradeFill(
        trade_id=str(trade.trade_id),
        price=trade.price,
        quantity=trade.quantity,
        fee=trade.commission,
        fee_asset=trade.commission_asset,
        time_ms=trade.time_ms,
    )
