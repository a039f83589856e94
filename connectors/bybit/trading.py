"""BybitTrading: spot trading on Bybit v5 (`category=spot`) behind the `TradingVenue` seam.

Orders are `orderType=Limit` + `timeInForce=IOC` under the client order id
given (`orderLinkId`, 32 hex: `client_id_style = "hex32"`). Bybit's create
answer is only an acknowledgement, so `place_order` then reads the order by
`orderLinkId` — `GET /v5/order/realtime`, then `GET /v5/order/history` — until
it is visible and final (`connectors.bybit.settle`).

The acceptance window is the recv window (`X-BAPI-RECV-WINDOW`, on every
signed request): the venue takes a request only while
`server_time - recv_window <= timestamp < server_time + 1000`.

A 10002 ("request time exceeds the time window") on an order is never re-sent
blindly: the order is settled by query, and sent once more only once no copy
of it can still be accepted (`connectors.bybit.settle`). `settle_order` is that
protocol on its own, for any order of unknown fate.

Fills: `GET /v5/execution/list?orderLinkId=` (`execFee`, `feeCurrency`; spot
fees are charged in the asset received). Balances:
`GET /v5/account/wallet-balance?accountType=UNIFIED`. Taker fee:
`GET /v5/account/fee-rate?category=spot&symbol=`. Symbol rules:
`GET /v5/market/instruments-info?category=spot`. Hosts: production, testnet
(`testnet=True`) or demo trading (`demo=True`); `rest_url` overrides (tests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import structlog

from connectors.bybit.facts import FACTS
from connectors.bybit.payloads import (
    next_cursor,
    parse_balances,
    parse_execution,
    parse_instrument,
    parse_order,
    parse_taker_fee_bps,
    result_list,
)
from connectors.bybit.settle import OrderSettler
from connectors.bybit.signing import BybitCredentials, check_order_link_id
from connectors.bybit.trading_errors import VENUE, BybitClockRejected
from connectors.bybit.transport import BybitRest, rest_url_for
from connectors.errors import OrderNotFound, OrderRuleViolation, ParseError
from connectors.lifecycle import StartOnce
from connectors.symbols import concatenated_map, join_symbol, split_concatenated, to_concatenated
from connectors.trading import (
    AccountBalance,
    ClientIdStyle,
    OrderReport,
    SymbolRules,
    TradeFill,
    TradingVenue,
)
from connectors.types import Side, decimal_text

log = structlog.get_logger(__name__)

CREATE: Final = "/v5/order/create"
CANCEL: Final = "/v5/order/cancel"
REALTIME: Final = "/v5/order/realtime"
HISTORY: Final = "/v5/order/history"
EXECUTIONS: Final = "/v5/execution/list"
MAX_PAGES: Final = 20  # of 50 open orders or 100 executions: far beyond what one IOC order makes


class BybitTrading(StartOnce):
    """Trade spot on Bybit v5 through its signed REST API; never re-send an order of unknown fate."""

    venue: str = VENUE
    client_id_style: ClientIdStyle = FACTS.client_id_style

    def __init__(
        self,
        credentials: BybitCredentials,
        symbols: Iterable[str],
        *,
        testnet: bool = False,
        demo: bool = False,
        rest_url: str | None = None,
        recv_window_ms: int = 5000,
        request_timeout_s: float = 10.0,
        order_max_wait_s: float = 2.0,
        max_wait_s: float = 30.0,
        clock_sync_interval_s: float = 300.0,
        rules_ttl_s: float = 3600.0,
        settle_margin_ms: int = 1000,
        settle_delays_s: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0),
        visibility_delays_s: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6),
        wall_ms: Callable[[], float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Configure; nothing is opened until `start()`. `symbols` are canonical (`BTC-USDT`)."""
        super().__init__()
        if not 0 < recv_window_ms <= 60_000:
            raise ValueError(f"bybit recv_window_ms must be 1..60000, got {recv_window_ms}")
        self.recv_window_ms = recv_window_ms
        self.order_max_wait_s = order_max_wait_s
        self.max_wait_s = max_wait_s
        self.rules_ttl_s = rules_ttl_s
        self._by_venue = concatenated_map(symbols)
        self._rest = BybitRest(
            rest_url or rest_url_for(testnet=testnet, demo=demo),
            credentials,
            recv_window_ms=recv_window_ms,
            timeout_s=request_timeout_s,
            clock_sync_interval_s=clock_sync_interval_s,
            wall_ms=wall_ms,
            monotonic=monotonic,
            sleep=sleep,
        )
        self._settler = OrderSettler(
            self._rest,
            self.query_order,
            self._create,
            recv_window_ms=recv_window_ms,
            settle_margin_ms=settle_margin_ms,
            settle_delays_s=settle_delays_s,
            visibility_delays_s=visibility_delays_s,
            sleep=sleep,
        )
        self._monotonic = monotonic
        self._rules: dict[str, SymbolRules] = {}
        self._rules_at = -float("inf")

    def __repr__(self) -> str:
        return f"BybitTrading(rest_url={self._rest.session.base_url!r}, recv_window_ms={self.recv_window_ms})"

    @property
    def acceptance_window_ms(self) -> int:
        """Return the recv window: a request older than this (venue clock) is refused."""
        return self.recv_window_ms

    @property
    def rest(self) -> BybitRest:
        """Return the signed transport (its throttles and clock)."""
        return self._rest

    # ----- lifecycle -------------------------------------------------------------------------

    async def _open(self) -> None:
        """Measure the clock offset and load the symbols' rules."""
        await self._rest.sync_clock(reason="start")
        await self._load_rules()

    async def _shut(self) -> None:
        await self._rest.close()

    def _log_started(self) -> None:
        log.info("bybit_trading_started", url=self._rest.session.base_url, recv_window_ms=self.recv_window_ms)

    # ----- rules -----------------------------------------------------------------------------

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        """Return the trading rules of a canonical symbol; OrderRuleViolation if Bybit lacks it."""
        await self._ensure_started()
        if self._monotonic() - self._rules_at >= self.rules_ttl_s:
            await self._load_rules()
        rules = self._rules.get(to_concatenated(symbol))
        if rules is None:
            raise OrderRuleViolation(f"bybit does not list {symbol} for spot trading")
        return rules

    async def _load_rules(self) -> None:
        result = await self._rest.public(
            "/v5/market/instruments-info", {"category": "spot"}, action="instruments info"
        )
        items = result_list(result, "instruments info")
        self._rules = {
            item["symbol"]: parse_instrument(item) for item in items if item.get("symbol") in self._by_venue
        }
        self._rules_at = self._monotonic()
        log.info("bybit_rules_loaded", venue=VENUE, symbols=len(self._rules))

    # ----- orders ----------------------------------------------------------------------------

    async def place_order(
        self, symbol: str, side: Side, quantity: Decimal, price: Decimal, client_order_id: str
    ) -> OrderReport:
        """Place one IOC limit order; raise OutcomeUnknown when its fate is unknown (query, never re-send)."""
        try:
            check_order_link_id(client_order_id)
        except ValueError as exc:
            raise OrderRuleViolation(str(exc)) from None
        await self._ensure_started()
        body = {
            "category": "spot",
            "symbol": to_concatenated(symbol),
            "side": "Buy" if side == "buy" else "Sell",
            "orderType": "Limit",
            "qty": decimal_text(quantity),
            "price": decimal_text(price),
            "timeInForce": "IOC",
            "orderLinkId": client_order_id,
        }
        try:
            answer = await self._create(body)
        except BybitClockRejected as refused:
            return await self._settler.after_clock_rejection(symbol, body, refused)
        return await self._settler.acknowledged(symbol, client_order_id, answer)

    async def _create(self, body: dict[str, str]) -> Any:
        return await self._rest.signed(
            "POST", CREATE, body, action="place order", may_execute=True, max_wait_s=self.order_max_wait_s
        )

    async def settle_order(
        self, symbol: str, client_order_id: str, *, signed_ms: int | None = None
    ) -> OrderReport:
        """Settle an order of unknown fate by query (`connectors.bybit.settle`); never send anything.

        Raise OrderNotFound only once no copy of it can still be accepted, OutcomeUnknown if the
        queries cannot tell. Not for an acknowledged order (`AcknowledgedNotVisible`): that one exists.
        """
        return await self._settler.settle(symbol, client_order_id, signed_ms=signed_ms)

    async def query_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Return the order with this orderLinkId (realtime, then history); else raise OrderNotFound."""
        await self._ensure_started()
        params = {"category": "spot", "orderLinkId": client_order_id}
        for path in (REALTIME, HISTORY):
            result = await self._rest.signed(
                "GET", path, params, action="query order", max_wait_s=self.max_wait_s
            )
            for item in result_list(result, "order query"):
                if item.get("orderLinkId") == client_order_id:
                    return parse_order(item, self._canonical)
        raise OrderNotFound(
            "empty", f"no order {client_order_id} on {REALTIME} or {HISTORY}", 200, venue=VENUE
        )

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Cancel the open order with this orderLinkId; OrderNotFound if it is not open."""
        await self._ensure_started()
        body = {"category": "spot", "symbol": to_concatenated(symbol), "orderLinkId": client_order_id}
        await self._rest.signed(
            "POST", CANCEL, body, action="cancel order", max_wait_s=self.max_wait_s, cancelling=True
        )
        return await self.query_order(symbol, client_order_id)

    async def order_trades(self, symbol: str, report: OrderReport) -> tuple[TradeFill, ...]:
        """Return the executions of the order in `report`, with the fee and its asset."""
        await self._ensure_started()
        rules = self._rules.get(to_concatenated(symbol))
        base, quote = (
            (rules.base_asset, rules.quote_asset) if rules else split_concatenated(to_concatenated(symbol))
        )
        params = {"category": "spot", "orderLinkId": report.client_order_id, "limit": "100"}
        items = await self._pages(EXECUTIONS, params, "executions")
        fills = [
            parse_execution(item, base, quote)
            for item in items
            if item.get("orderLinkId") == report.client_order_id and item.get("execType", "Trade") == "Trade"
        ]
        return tuple(sorted(fills, key=lambda fill: (fill.time_ms or 0, fill.trade_id)))

    async def open_orders(self) -> list[OrderReport]:
        """Return every open spot order of the account on the configured symbols."""
        await self._ensure_started()
        items = await self._pages(
            REALTIME, {"category": "spot", "openOnly": "0", "limit": "50"}, "open orders"
        )
        reports = [
            parse_order(item, self._canonical) for item in items if item.get("symbol") in self._by_venue
        ]
        return [report for report in reports if report.is_open]

    async def _pages(self, path: str, params: dict[str, str], action: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(MAX_PAGES):
            page = params | ({"cursor": cursor} if cursor else {})
            result = await self._rest.signed("GET", path, page, action=action, max_wait_s=self.max_wait_s)
            items.extend(result_list(result, action))
            cursor = next_cursor(result)
            if not cursor:
                return items
        raise ParseError(f"bybit {action}: more than {MAX_PAGES} pages")

    # ----- account ---------------------------------------------------------------------------

    async def balances(self) -> dict[str, AccountBalance]:
        """Return the unified account's balances by asset (free = wallet balance - locked)."""
        await self._ensure_started()
        result = await self._rest.signed(
            "GET",
            "/v5/account/wallet-balance",
            {"accountType": "UNIFIED"},
            action="wallet balance",
            max_wait_s=self.max_wait_s,
        )
        return parse_balances(result)

    async def taker_fee_bps(self, symbol: str) -> Decimal | None:
        """Return the account's spot taker fee for `symbol` in bps (`/v5/account/fee-rate`)."""
        await self._ensure_started()
        venue_symbol = to_concatenated(symbol)
        result = await self._rest.signed(
            "GET",
            "/v5/account/fee-rate",
            {"category": "spot", "symbol": venue_symbol},
            action="fee rate",
            max_wait_s=self.max_wait_s,
        )
        return parse_taker_fee_bps(result, venue_symbol)

    def _canonical(self, venue_symbol: str) -> str:
        known = self._by_venue.get(venue_symbol)
        if known is not None:
            return known
        try:
            return join_symbol(*split_concatenated(venue_symbol))
        except ValueError:
            raise ParseError(f"bybit answer: unknown symbol {venue_symbol!r}") from None


if TYPE_CHECKING:

    def _implements_the_seam(client: BybitTrading) -> TradingVenue:
        return client  # mypy proves BybitTrading is a TradingVenue
