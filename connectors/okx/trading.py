"""OkxTrading: spot trading on OKX v5 REST (`tdMode=cash`), the `TradingVenue` of `connectors.trading`.

    okx = OkxTrading(credentials=OkxCredentials(key, secret, passphrase), symbols=["BTC-USDT"])
    await okx.start()
    report = await okx.place_order("BTC-USDT", "buy", Decimal("0.01"), Decimal("64000"), client_id)

Orders are IOC limit orders (`ordType=ioc` with `px`) under the caller's `clOrdId`
(32 hex from `venue_client_order_id(..., "hex32")`: OKX takes 1–32 letters and digits).
Every order carries the `expTime` header, the venue's own acceptance deadline:
"the request will not be processed if the current system time of the server is after
the expTime". It is `order_deadline_ms` after the send on the venue's clock, so
`acceptance_window_ms` (that deadline plus `visibility_margin_ms` for the order to show
on the query endpoint) bounds how long a lost order could still appear.

An order is sent once. OKX keeps a `clOrdId` unique only among *pending* orders: once an
IOC order is terminal the same id is accepted again and executes again, so an unknown
outcome (timeout, dropped connection, 5xx, 50004/50001/50013/50026) is raised as
`OutcomeUnknown` for the caller to settle by `query_order` — never by sending again.
The one re-send is after a timestamp refusal (50102, 50112, 50036), which OKX gives before
processing anything: the clock is re-measured and that request signed again once.

A successful placement answers only an acknowledgement (`ordId`, `sCode`); the order's
state and fill quantity come from one query by `ordId` right after. If that query
fails, the order exists but its result is unknown: `OutcomeUnknown` again.

The request path (throttle with the documented budgets, clock, signature, one re-sign
after a timestamp refusal) is `connectors.okx.rest`; what each answer means is
`connectors.okx.trading_errors`; the payloads are `connectors.okx.trading_payloads`.

Demo trading (`testnet=True`) adds `x-simulated-trading: 1` (demo keys required) and uses
`DEMO_REST_URL`: the current docs list `https://openapi.okx.com` for demo REST, while older
copies and python-okx send the header to `https://www.okx.com`; `rest_url` overrides both.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Final

import structlog

from connectors.errors import OrderAcknowledged, OrderRuleViolation, OutcomeUnknown, ParseError, VenueError
from connectors.lifecycle import StartOnce
from connectors.okx.facts import FACTS, TESTNET
from connectors.okx.rest import OkxRest
from connectors.okx.signing import OkxCredentials
from connectors.okx.trading_errors import VENUE
from connectors.okx.trading_payloads import (
    FillRow,
    Instrument,
    first,
    parse_balances,
    parse_fills,
    parse_instruments,
    parse_order,
    parse_taker_fee_bps,
)
from connectors.rest import Throttle, VenueClock
from connectors.symbols import validate_symbol
from connectors.trading import AccountBalance, ClientIdStyle, OrderReport, SymbolRules, TradeFill
from connectors.types import Side, decimal_text

log = structlog.get_logger(__name__)

PRODUCTION_REST_URL: Final = FACTS.rest_url
DEMO_REST_URL: Final = TESTNET.trade_url
CLIENT_ORDER_ID: Final = re.compile(r"[A-Za-z0-9]{1,32}")
PAGE: Final = 100  # the most the list endpoints return per request


class OkxTrading(StartOnce):
    """Trade spot on OKX through its signed REST API, safely under limits, clock skew and faults."""

    venue: Final = VENUE
    client_id_style: ClientIdStyle = FACTS.client_id_style

    def __init__(
        self,
        *,
        credentials: OkxCredentials | None,
        testnet: bool = False,
        rest_url: str | None = None,
        symbols: Iterable[str] = (),
        order_deadline_ms: int = 3000,
        visibility_margin_ms: int = 2000,
        request_timeout_s: float = 10.0,
        max_wait_s: float = 10.0,
        order_max_wait_s: float = 2.0,
        clock_sync_interval_s: float = 300.0,
        rules_ttl_s: float = 3600.0,
        fee_ttl_s: float = 3600.0,
        backoff_s: float = 2.0,
        ban_s: float = 300.0,
        throttle: Throttle | None = None,
        clock: VenueClock | None = None,
    ) -> None:
        """Configure; nothing is opened until `start()` (or the first call, which starts it)."""
        super().__init__()
        if not 0 < order_deadline_ms <= 30_000:
            raise ValueError(f"order_deadline_ms must be 1..30000, got {order_deadline_ms}")
        self.testnet = testnet
        self.rest = OkxRest(
            rest_url or (DEMO_REST_URL if testnet else PRODUCTION_REST_URL),
            credentials=credentials, simulated=testnet, request_timeout_s=request_timeout_s,
            order_deadline_ms=order_deadline_ms, max_wait_s=max_wait_s, order_max_wait_s=order_max_wait_s,
            clock_sync_interval_s=clock_sync_interval_s, backoff_s=backoff_s, ban_s=ban_s, throttle=throttle,
            clock=clock,
        )  # fmt: skip
        self.symbols = frozenset(validate_symbol(s) for s in symbols)
        self.order_deadline_ms = order_deadline_ms
        self.visibility_margin_ms = visibility_margin_ms
        self.rules_ttl_s, self.fee_ttl_s = rules_ttl_s, fee_ttl_s
        self._instruments: dict[str, Instrument] = {}
        self._instruments_at = -float("inf")
        self._fees: dict[str, tuple[float, Decimal | None]] = {}
        self._rules_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"OkxTrading({self.rest!r})"

    @property
    def acceptance_window_ms(self) -> int:
        """Return the `expTime` deadline plus the margin for a late order to show on the query endpoint."""
        return self.order_deadline_ms + self.visibility_margin_ms

    # ----- lifecycle ---------------------------------------------------------------------------

    async def _open(self) -> None:
        """Measure the clock offset and load the spot instruments."""
        await self.rest.sync_clock(reason="start")
        await self._load_instruments()

    async def _shut(self) -> None:
        await self.rest.close()

    def _log_started(self) -> None:
        log.info("okx_trading_started", url=self.rest.session.base_url, testnet=self.testnet)

    # ----- rules, account, fees ----------------------------------------------------------------

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        """Return the trading rules of canonical `symbol`; OrderRuleViolation if OKX lists none."""
        return (await self._instrument(symbol)).rules

    async def balances(self) -> dict[str, AccountBalance]:
        """Return the trading account's balances by upper-case currency."""
        return parse_balances(
            await self.rest.private("GET", "/api/v5/account/balance", {}, "balance", "balance")
        )

    async def taker_fee_bps(self, symbol: str) -> Decimal | None:
        """Return the account's taker fee for `symbol` in bps (cached), or None if OKX cannot tell."""
        cached = self._fees.get(symbol)
        if cached is not None and time.monotonic() - cached[0] < self.fee_ttl_s:
            return cached[1]
        instrument = await self._instrument(symbol)
        params = {"instType": "SPOT", "instId": symbol}
        data = await self.rest.private("GET", "/api/v5/account/trade-fee", params, "fee", "trade fee")
        fee = parse_taker_fee_bps(data, instrument.group_id, instrument.rules.quote_asset)
        self._fees[symbol] = (time.monotonic(), fee)
        log.info("okx_taker_fee_read", symbol=symbol, fee_bps=None if fee is None else decimal_text(fee))
        return fee

    # ----- orders ------------------------------------------------------------------------------

    async def place_order(
        self, symbol: str, side: Side, quantity: Decimal, price: Decimal, client_order_id: str
    ) -> OrderReport:
        """Place one IOC limit order under `client_order_id`; OutcomeUnknown when its fate is unknown."""
        if CLIENT_ORDER_ID.fullmatch(client_order_id) is None:
            raise OrderRuleViolation(f"okx clOrdId must be 1-32 letters and digits, got {client_order_id!r}")
        inst_id = (await self._instrument(symbol)).rules.venue_symbol
        body = {
            "instId": inst_id, "tdMode": "cash", "clOrdId": client_order_id, "side": side,
            "ordType": "ioc", "px": decimal_text(price), "sz": decimal_text(quantity),
        }  # fmt: skip
        data = await self.rest.private(
            "POST", "/api/v5/trade/order", body, self.rest.per_instrument("order", inst_id), "place order",
            order=True,
        )  # fmt: skip
        try:
            venue_order_id = first(data, "place order").get("ordId")
        except (VenueError, ParseError) as exc:
            raise OutcomeUnknown(
                f"okx answered order {client_order_id} unreadably ({exc}); query it"
            ) from None
        if not isinstance(venue_order_id, str) or not venue_order_id:
            raise OutcomeUnknown(f"okx answered order {client_order_id} without an ordId; query it")
        log.info("okx_order_acknowledged", client_order_id=client_order_id, venue_order_id=venue_order_id)
        try:
            return await self._query(inst_id, {"ordId": venue_order_id})
        except (VenueError, ParseError) as exc:
            raise OrderAcknowledged(
                f"okx accepted order {client_order_id} as {venue_order_id} but its result could not be "
                f"read ({exc}); query it",
                venue_order_id,
            ) from None

    async def query_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Return the latest order with this client id (OKX keeps only the latest); OrderNotFound if none."""
        inst_id = (await self._instrument(symbol)).rules.venue_symbol
        return await self._query(inst_id, {"clOrdId": client_order_id})

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Cancel the pending order with this client id; OrderNotFound if none is pending (51400)."""
        inst_id = (await self._instrument(symbol)).rules.venue_symbol
        body = {"instId": inst_id, "clOrdId": client_order_id}
        budget = self.rest.per_instrument("cancel", inst_id)
        await self.rest.private(
            "POST", "/api/v5/trade/cancel-order", body, budget, "cancel order", per_order=True
        )
        return await self._query(inst_id, {"clOrdId": client_order_id})

    async def order_trades(self, symbol: str, report: OrderReport) -> tuple[TradeFill, ...]:
        """Return the executions of the order in `report` with their fees, oldest first.

        `fills` covers 3 days; when it holds less than the order executed, `fills-history` (3 months).
        """
        inst_id = (await self._instrument(symbol)).rules.venue_symbol
        fills: tuple[TradeFill, ...] = ()
        for path, budget in (
            ("/api/v5/trade/fills", "fills"),
            ("/api/v5/trade/fills-history", "fills_history"),
        ):
            fills = await self._fills(path, budget, inst_id, report.venue_order_id)
            if sum((f.quantity for f in fills), Decimal(0)) >= report.executed_qty:
                break
        return fills

    async def fills_by_client_id(
        self, symbol: str, client_order_id: str, since_ms: int
    ) -> tuple[TradeFill, ...]:
        """Return the executions of every order with this client id since `since_ms` (3 months at most).

        For settling an order the query endpoint no longer shows: OKX keeps a cancelled
        order without fills only 2 hours, while `fills-history` keeps executions 3 months.
        No execution since the order's intent proves it executed nothing.
        """
        inst_id = (await self._instrument(symbol)).rules.venue_symbol
        params = {"instType": "SPOT", "instId": inst_id, "begin": str(since_ms)}
        rows = await self._fill_rows("/api/v5/trade/fills-history", "fills_history", params)
        return _chronological(row.fill for row in rows if row.client_order_id == client_order_id)

    async def open_orders(self) -> list[OrderReport]:
        """Return every pending spot order of the account (on the configured symbols, if any)."""
        await self._ensure_started()
        reports: list[OrderReport] = []
        params = {"instType": "SPOT", "limit": str(PAGE)}
        while True:
            data = await self.rest.private(
                "GET", "/api/v5/trade/orders-pending", params, "pending", "open orders"
            )
            for item in data:
                inst_id = str(item.get("instId")) if isinstance(item, dict) else ""
                if inst_id in self._instruments and (not self.symbols or inst_id in self.symbols):
                    reports.append(parse_order(item, inst_id))
            if len(data) < PAGE:
                return reports
            params = params | {"after": str(data[-1].get("ordId"))}

    # ----- helpers -----------------------------------------------------------------------------

    async def _query(self, inst_id: str, key: dict[str, str]) -> OrderReport:
        params = {"instId": inst_id} | key
        budget = self.rest.per_instrument("query", inst_id)
        data = await self.rest.private("GET", "/api/v5/trade/order", params, budget, "query order")
        return parse_order(first(data, "query order"), inst_id)

    async def _fills(
        self, path: str, budget: str, inst_id: str, venue_order_id: str
    ) -> tuple[TradeFill, ...]:
        params = {"instType": "SPOT", "instId": inst_id, "ordId": venue_order_id}
        rows = await self._fill_rows(path, budget, params)
        if any(row.venue_order_id != venue_order_id for row in rows):
            raise ParseError(f"okx fills of order {venue_order_id} list another order's execution")
        return _chronological(row.fill for row in rows)

    async def _fill_rows(self, path: str, budget: str, params: dict[str, str]) -> list[FillRow]:
        rows: list[FillRow] = []
        params = params | {"limit": str(PAGE)}
        while True:
            data = await self.rest.private("GET", path, params, budget, "order fills")
            page = parse_fills(data, params["instId"])
            rows += page
            if len(page) < PAGE:
                return rows
            params = params | {"after": page[-1].bill_id}  # records earlier than this billId

    async def _instrument(self, symbol: str) -> Instrument:
        await self._ensure_started()
        if time.monotonic() - self._instruments_at >= self.rules_ttl_s:
            async with self._rules_lock:
                if time.monotonic() - self._instruments_at >= self.rules_ttl_s:
                    await self._load_instruments()
        instrument = self._instruments.get(validate_symbol(symbol))
        if instrument is None:
            raise OrderRuleViolation(f"okx does not list the spot instrument {symbol}")
        return instrument

    async def _load_instruments(self) -> None:
        params = {"instType": "SPOT"}
        data = await self.rest.request(
            "GET", "/api/v5/public/instruments", params, "instruments", "instruments"
        )
        self._instruments, skipped = parse_instruments(data)
        self._instruments_at = time.monotonic()
        log.info("okx_instruments_loaded", instruments=len(self._instruments), skipped=skipped[:20])


def _chronological(fills: Iterable[TradeFill]) -> tuple[TradeFill, ...]:
    return tuple(sorted(fills, key=lambda f: (f.time_ms or 0, f.trade_id)))
