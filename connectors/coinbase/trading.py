"""CoinbaseTrading: the live executor's client for Coinbase Advanced Trade spot (`TradingVenue`).

Orders are IOC limit orders, `POST /api/v3/brokerage/orders` with
`order_configuration.sor_limit_ioc{base_size, limit_price}` and the REQUIRED
`client_order_id` the executor derived (a 36-character UUID). Product ids are
already canonical (`BTC-USD`).

**Settling an unknown outcome.** Coinbase documents that a repeated
`client_order_id` does not create a second order: "If the ID provided is not
unique, the order will not be created and the order corresponding with that ID
will be returned instead." That replay is NOT used as a query here. It is a
resend: if the first request never reached Coinbase, the replay creates the
order — possibly after the acceptance window, at a price that is no longer
wanted — and how long Coinbase remembers an id is not documented. The daemon's
rule is to settle by query and never send again, so `query_order` lists the
product's orders (`GET /orders/historical/batch?product_ids=…&start_date=…`,
every page) from shortly before the send and matches `client_order_id` itself;
once an order id is known it reads `GET /orders/historical/{order_id}`. The
`client_order_id` query parameter of get-order is marked Deprecated and is not
used. After a restart the send time is unknown to this process: the caller may
pass `since_ms` (the ledger's intent time); without it the product's whole
history is listed (or the last `query_lookback_s` when configured). A listing
longer than `MAX_PAGES` pages fails rather than answer "not found".

**Acceptance window.** Coinbase has no recv-window or deadline parameter; what
bounds a late acceptance is the JWT: every order request carries a token that
expires `JWT_LIFETIME_S` (120 s) after its `nbf`, and a request whose token has
expired is refused unauthenticated. So an order sent at `t` cannot be accepted
after `t + 120 s` (+ the clock margin); only then is "no such order" final.
That the gateway's token check is also the last gate before the matching
engine is an inference, not documented (EXCHANGES-TRADING.md §3.4).

**Testnet.** `testnet=True` points at `https://api-sandbox.coinbase.com`, which
Coinbase documents as a *static mocked* sandbox: no authentication, canned
answers, Accounts and Orders endpoints only. It checks request shapes; it
cannot check signing, state, fills, fees or product rules.

Fills: `GET /orders/historical/fills?order_ids=` (commission in the quote
currency). Balances: `GET /accounts` (paginated). Taker fee:
`GET /transaction_summary` (`fee_tier.taker_fee_rate`). Rules:
`GET /products/{product_id}`. Error mapping: `trading_errors`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import orjson
import structlog

from connectors.coinbase.facts import FACTS
from connectors.coinbase.payloads import (
    parse_accounts,
    parse_fills,
    parse_order,
    parse_product,
    parse_taker_fee_bps,
    side_name,
)
from connectors.coinbase.rest_client import CoinbaseRest, query_pairs
from connectors.coinbase.signing import JWT_LIFETIME_S, CoinbaseCredentials
from connectors.coinbase.trading_errors import VENUE, accepted_order_id
from connectors.errors import (
    OrderAcknowledged,
    OrderNotFound,
    OrderRuleViolation,
    ParseError,
    VenueError,
    VenueRejected,
)
from connectors.lifecycle import StartOnce
from connectors.rest import Throttle
from connectors.symbols import validate_symbol
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

PRODUCTION_REST_URL: Final = FACTS.rest_url
SANDBOX_REST_URL: Final = "https://api-sandbox.coinbase.com"  # static mocked answers, no auth
PAGE_LIMIT: Final = "250"
MAX_PAGES: Final = 50
_REMEMBERED: Final = 10_000  # client ids whose send time / order id this process keeps
# Orders are listed from this long before the send: Coinbase stamps `created_time` on its clock.
LIST_MARGIN_MS: Final = 60_000
_CANCEL_NOT_OPEN: Final = frozenset({"UNKNOWN_CANCEL_ORDER", "INVALID_CANCEL_REQUEST"})


@dataclass(slots=True)
class _Sent:
    product_id: str
    sent_ms: int
    order_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Product:
    rules: SymbolRules
    product_ids: tuple[str, ...]  # the product and its aliases, as orders may be reported under either
    loaded_at: float


class CoinbaseTrading(StartOnce):
    """Trade spot on Coinbase Advanced Trade through its signed REST API; never re-send an order."""

    venue: str = VENUE
    client_id_style: ClientIdStyle = FACTS.client_id_style

    def __init__(
        self,
        *,
        credentials: CoinbaseCredentials | None,
        symbols: tuple[str, ...] = (),
        testnet: bool = False,
        rest_url: str | None = None,
        request_timeout_s: float = 10.0,
        max_wait_s: float = 30.0,
        order_max_wait_s: float = 2.0,
        clock_sync_interval_s: float = 300.0,
        clock_margin_ms: int = 1000,
        rules_ttl_s: float = 3600.0,
        fee_ttl_s: float = 3600.0,
        query_lookback_s: float | None = None,
        throttle: Throttle | None = None,
        wall_ms: Callable[[], float] | None = None,
    ) -> None:
        """Configure; nothing is opened until `start()` (or the first call, which starts it)."""
        super().__init__()
        self.symbols = tuple(validate_symbol(s) for s in symbols)
        self.testnet = testnet
        url = rest_url or (SANDBOX_REST_URL if testnet else PRODUCTION_REST_URL)
        self.rest = CoinbaseRest(
            url,
            credentials,
            request_timeout_s=request_timeout_s,
            max_wait_s=max_wait_s,
            clock_sync_interval_s=clock_sync_interval_s,
            throttle=throttle,
            wall_ms=wall_ms,
        )
        self.order_max_wait_s = order_max_wait_s
        self.clock_margin_ms = clock_margin_ms
        self.rules_ttl_s = rules_ttl_s
        self.fee_ttl_s = fee_ttl_s
        self.query_lookback_s = query_lookback_s
        self._products: dict[str, _Product] = {}
        self._sent: OrderedDict[str, _Sent] = OrderedDict()
        self._fee: tuple[float, Decimal | None] | None = None

    def __repr__(self) -> str:
        return f"CoinbaseTrading(rest={self.rest!r}, testnet={self.testnet})"

    @property
    def acceptance_window_ms(self) -> int:
        """Return the JWT life plus the clock margin: no order request is accepted later than that."""
        return JWT_LIFETIME_S * 1000 + self.clock_margin_ms

    # ----- lifecycle -------------------------------------------------------------------------

    async def _open(self) -> None:
        """Measure the venue clock and load the configured symbols' rules."""
        await self.rest.sync_clock(reason="start")
        for symbol in self.symbols:
            await self._product(symbol, refresh=True)

    async def _shut(self) -> None:
        await self.rest.close()

    def _log_started(self) -> None:
        log.info("coinbase_trading_started", url=self.rest.session.base_url, symbols=len(self.symbols))

    # ----- rules and fees ------------------------------------------------------------------

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        """Return the trading rules of `symbol` (`GET /products/{product_id}`), cached for `rules_ttl_s`."""
        await self._ensure_started()
        return (await self._product(symbol)).rules

    async def _product(self, symbol: str, *, refresh: bool = False) -> _Product:
        known = self._products.get(validate_symbol(symbol))
        if known is not None and not refresh and time.monotonic() - known.loaded_at < self.rules_ttl_s:
            return known
        try:
            answer = await self.rest.call("GET", f"/products/{symbol}", action="read product")
        except OrderNotFound:
            raise OrderRuleViolation(f"coinbase does not list {symbol}") from None
        except VenueRejected as exc:
            if exc.status in (400, 404):
                raise OrderRuleViolation(f"coinbase does not list {symbol}") from None
            raise
        rules, product_ids = parse_product(answer, symbol)
        self._products[symbol] = _Product(rules, product_ids, time.monotonic())
        return self._products[symbol]

    async def taker_fee_bps(self, symbol: str) -> Decimal | None:
        """Return the account's taker fee in bps (`transaction_summary`), cached for `fee_ttl_s`."""
        await self._ensure_started()
        if self._fee is None or time.monotonic() - self._fee[0] >= self.fee_ttl_s:
            query = query_pairs(product_type="SPOT")
            answer = await self.rest.call("GET", "/transaction_summary", query=query, action="read fee tier")
            self._fee = (time.monotonic(), parse_taker_fee_bps(answer))
        return self._fee[1]

    # ----- orders ----------------------------------------------------------------------------

    async def place_order(
        self, symbol: str, side: Side, quantity: Decimal, price: Decimal, client_order_id: str
    ) -> OrderReport:
        """Place one IOC limit order under `client_order_id`; raise OutcomeUnknown when its fate is unknown.

        Never re-sent: an unknown outcome (timeout, dropped connection, 5xx, an unreadable
        answer, UNKNOWN_FAILURE_REASON) is for the caller to settle with `query_order`.
        """
        await self._ensure_started()
        if not client_order_id:
            raise OrderRuleViolation("coinbase requires a client_order_id; not sent")
        product = (await self._product(symbol)).rules.venue_symbol
        body = {
            "client_order_id": client_order_id,
            "product_id": product,
            "side": side_name(side),
            "order_configuration": {
                "sor_limit_ioc": {"base_size": decimal_text(quantity), "limit_price": decimal_text(price)}
            },
        }
        sent = self._remember(client_order_id, _Sent(product, self.rest.clock.now_ms()))
        answer = await self.rest.call(
            "POST",
            "/orders",
            body=orjson.dumps(body),
            action="place order",
            may_execute=True,
            max_wait_s=self.order_max_wait_s,
        )
        sent.order_id = accepted_order_id(answer, client_order_id, self.rest.secrets)
        try:
            return await self._get_order(sent.order_id, symbol)
        except (VenueError, ParseError) as exc:
            raise OrderAcknowledged(
                f"coinbase accepted order {client_order_id} as {sent.order_id} but its state could not be "
                f"read ({type(exc).__name__}); query it",
                sent.order_id,
            ) from None

    async def query_order(
        self, symbol: str, client_order_id: str, *, since_ms: int | None = None
    ) -> OrderReport:
        """Return the order with this client id; raise OrderNotFound when Coinbase lists none.

        Lists the product's orders from shortly before the send (`since_ms`, else the
        remembered send time, else `query_lookback_s` ago, else all) and matches the id here.
        """
        await self._ensure_started()
        known = self._sent.get(client_order_id)
        if known is not None and known.order_id is not None:
            return await self._get_order(known.order_id, symbol)
        product = await self._product(symbol)
        start_ms = since_ms if since_ms is not None else known.sent_ms if known else None
        if start_ms is None and self.query_lookback_s is not None:
            start_ms = self.rest.clock.now_ms() - int(self.query_lookback_s * 1000)
        since = None if start_ms is None else start_ms - LIST_MARGIN_MS
        order = await self._find_listed(product.product_ids, client_order_id, since)
        if order is None:
            window = "ever" if since is None else f"since {_iso(since)}"
            raise OrderNotFound(
                "NOT_FOUND", f"no order {client_order_id} listed for {symbol} {window}", 404, venue=VENUE
            )
        report = parse_order(order, symbol)
        entry = self._remember(client_order_id, known or _Sent(product.rules.venue_symbol, since or 0))
        entry.order_id = report.venue_order_id
        return report

    async def _find_listed(
        self, product_ids: tuple[str, ...], client_order_id: str, start_ms: int | None
    ) -> Mapping[str, Any] | None:
        start = None if start_ms is None else _iso(start_ms)
        base = query_pairs(product_ids=product_ids, start_date=start, limit=PAGE_LIMIT)
        async for order in self._pages("/orders/historical/batch", base, "orders", "list orders"):
            if order.get("client_order_id") == client_order_id:
                return order
        return None

    async def _get_order(self, order_id: str, symbol: str) -> OrderReport:
        answer = await self.rest.call("GET", f"/orders/historical/{order_id}", action="query order")
        order = answer.get("order") if isinstance(answer, Mapping) else None
        return parse_order(order, symbol)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Cancel the open order with this client id; raise OrderNotFound when none is open."""
        report = await self.query_order(symbol, client_order_id)
        if not report.is_open:
            raise OrderNotFound("NOT_OPEN", f"order {client_order_id} is {report.status}", 400, venue=VENUE)
        body = orjson.dumps({"order_ids": [report.venue_order_id]})
        answer = await self.rest.call("POST", "/orders/batch_cancel", body=body, action="cancel order")
        results = answer.get("results") if isinstance(answer, Mapping) else None
        result = next((r for r in results or () if isinstance(r, Mapping)), None)
        if result is None:
            raise ParseError("coinbase batch_cancel answer has no result")
        if result.get("success") is not True:
            reason = str(result.get("failure_reason") or "UNKNOWN_CANCEL_FAILURE_REASON")
            error = OrderNotFound if reason in _CANCEL_NOT_OPEN else VenueRejected
            raise error(reason, f"cancel of {client_order_id} refused", 200, venue=VENUE)
        return await self._get_order(report.venue_order_id, symbol)

    async def order_trades(self, symbol: str, report: OrderReport) -> tuple[TradeFill, ...]:
        """Return the order's fills with their commissions (quote currency)."""
        quote = (await self.symbol_rules(symbol)).quote_asset
        base = query_pairs(order_ids=[report.venue_order_id], limit=PAGE_LIMIT)
        fills: list[TradeFill] = []
        async for page in self._raw_pages("/orders/historical/fills", base, "list fills"):
            fills.extend(parse_fills(page, quote, report.venue_order_id))
        return tuple(fills)

    async def open_orders(self) -> list[OrderReport]:
        """Return every open order of the account on the configured symbols."""
        await self._ensure_started()
        by_product = {pid: s for s in self.symbols for pid in (await self._product(s)).product_ids}
        if not by_product:
            return []
        base = query_pairs(product_ids=list(by_product), order_status="OPEN", limit=PAGE_LIMIT)
        reports = []
        async for order in self._pages("/orders/historical/batch", base, "orders", "list open orders"):
            symbol = by_product.get(str(order.get("product_id")))
            report = None if symbol is None else parse_order(order, symbol)
            if report is not None and report.is_open:  # the filters are checked here too
                reports.append(report)
        return reports

    async def balances(self) -> dict[str, AccountBalance]:
        """Return the account's balances by upper-case asset (every page of `GET /accounts`)."""
        await self._ensure_started()
        found: dict[str, AccountBalance] = {}
        async for page in self._raw_pages("/accounts", query_pairs(limit=PAGE_LIMIT), "read balances"):
            parse_accounts(page, found)
        return found

    # ----- helpers ---------------------------------------------------------------------------

    async def _raw_pages(
        self, path: str, base: list[tuple[str, str]], action: str
    ) -> AsyncIterator[Mapping[str, Any]]:
        cursor = ""
        for _ in range(MAX_PAGES):
            query = base + ([("cursor", cursor)] if cursor else [])
            page = await self.rest.call("GET", path, query=query, action=action)
            if not isinstance(page, Mapping):
                raise ParseError(f"coinbase {action}: the answer must be an object")
            yield page
            cursor = str(page.get("cursor") or "")
            if not cursor or page.get("has_next") is False:
                return
        raise VenueError(f"coinbase {action}: more than {MAX_PAGES} pages; the answer is incomplete")

    async def _pages(
        self, path: str, base: list[tuple[str, str]], key: str, action: str
    ) -> AsyncIterator[Mapping[str, Any]]:
        async for page in self._raw_pages(path, base, action):
            items = page.get(key)
            if not isinstance(items, list):
                raise ParseError(f"coinbase {action}: the answer must hold a {key!r} list")
            for item in items:
                if isinstance(item, Mapping):
                    yield item

    def _remember(self, client_order_id: str, entry: _Sent) -> _Sent:
        self._sent[client_order_id] = entry
        self._sent.move_to_end(client_order_id)
        while len(self._sent) > _REMEMBERED:
            self._sent.popitem(last=False)
        return entry


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _implements_the_seam(client: CoinbaseTrading) -> TradingVenue:
    return client  # mypy proves CoinbaseTrading is a TradingVenue
