"""KrakenTrading: Kraken spot trading over REST, as the live executor needs it (`TradingVenue`).

    kraken = KrakenTrading(credentials=KrakenCredentials(key, secret), symbols=["BTC-USD"])
    await kraken.start()
    report = await kraken.place_order("BTC-USD", "buy", qty, price, client_order_id)

Orders are IOC limit orders (`ordertype=limit`, `timeinforce=IOC`) carrying the
36-character UUID client id they are given (`cl_ord_id`), `oflags=fciq` (fees
in the quote currency) and a `deadline`: an RFC 3339 time `deadline_s` (≤ 60)
after the venue's current time, after which "the matching engine should reject
the order". That deadline is the acceptance window: `acceptance_window_ms` is
`deadline_s` plus the 1 s resolution of Kraken's server clock, so "no such
order" that long after a send is final.

Kraken's AddOrder answer holds only the order id, so `place_order` then looks
the order up by client id (OpenOrders, then ClosedOrders, both with the
`cl_ord_id` filter); if it cannot see it before the acceptance window ends, it
raises OutcomeUnknown — the order exists but only a later query can tell its
fills. A client id is unique only among OPEN orders on Kraken (an IOC order
closes at once, and the same id is then accepted again and executes again),
so an order is never re-sent here: every lost answer is OutcomeUnknown, to be
settled by `query_order`.

Kraken has no spot sandbox (testnet or demo): `testnet=True` is refused.
Error codes and throttling: `connectors.kraken.trading_errors`; signing and
nonces: `connectors.kraken.signing`; budgets: `connectors.kraken.private`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Final

import structlog

from connectors.errors import (
    OrderAcknowledged,
    OrderNotFound,
    OrderRuleViolation,
    OutcomeUnknown,
    ParseError,
    VenueError,
    VenueRejected,
)
from connectors.kraken.facts import FACTS
from connectors.kraken.payloads import (
    KrakenPair,
    fee_asset,
    first_txid,
    latest_with_client_id,
    mapping_of,
    pair_of,
    parse_asset_pairs,
    parse_balances,
    parse_order,
    parse_taker_fee_bps,
    parse_trades,
    trade_ids,
    whole_order_fill,
)
from connectors.kraken.private import KrakenRest, Tier, measure_clock, rfc3339_ms
from connectors.kraken.signing import KrakenCredentials, NonceSource
from connectors.kraken.trading_errors import DEADLINE_ELAPSED
from connectors.lifecycle import StartOnce
from connectors.rest import RestSession, Throttle, VenueClock
from connectors.symbols import validate_symbol
from connectors.trading import AccountBalance, ClientIdStyle, OrderReport, SymbolRules, TradeFill
from connectors.types import Side, decimal_text

log = structlog.get_logger(__name__)

PRODUCTION_REST_URL: Final = FACTS.rest_url
VENUE: Final = "kraken"
CLOCK_RESOLUTION_MS: Final = 1000  # Kraken's Time endpoint reports whole seconds
NO_SANDBOX: Final = (
    "kraken has no spot sandbox (no testnet or demo environment; its beta WebSocket shares the "
    "production engine): set testnet = false for kraken, and try it with small live orders"
)
_UUID36: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ACK_QUERY_DELAYS_S: Final = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


class KrakenTrading(StartOnce):
    """Kraken spot trading on its REST API (`connectors.trading.TradingVenue`)."""

    venue: Final = VENUE
    client_id_style: ClientIdStyle = FACTS.client_id_style

    def __init__(
        self,
        *,
        credentials: KrakenCredentials | None,
        symbols: Sequence[str],
        rest_url: str = PRODUCTION_REST_URL,
        testnet: bool = False,
        deadline_s: float = 5.0,
        tier: str | Tier = "starter",
        request_timeout_s: float = 10.0,
        max_wait_s: float = 30.0,
        order_max_wait_s: float = 2.0,
        clock_sync_interval_s: float = 300.0,
        rules_ttl_s: float = 3600.0,
        throttle: Throttle | None = None,
        wall_ms: Callable[[], float] | None = None,
        nonces: NonceSource | None = None,
    ) -> None:
        """Configure; nothing is opened until `start()`. Raise ValueError on bad settings."""
        super().__init__()
        if testnet:
            raise ValueError(NO_SANDBOX)
        if not 0 < deadline_s <= 60:
            raise ValueError(f"kraken deadline_s must be in (0, 60] (Kraken's limit), got {deadline_s}")
        self.symbols = tuple(validate_symbol(s) for s in symbols)
        self.deadline_s = deadline_s
        self.max_wait_s = max_wait_s
        self.order_max_wait_s = order_max_wait_s
        self.clock_sync_interval_s = clock_sync_interval_s
        self.rules_ttl_s = rules_ttl_s
        self.clock = VenueClock(VENUE, wall_ms=wall_ms)
        session = RestSession(VENUE, rest_url, timeout_s=request_timeout_s)
        self.rest = KrakenRest(
            session,
            credentials,
            tier=tier,
            clock=self.clock,
            throttle=throttle or Throttle(VENUE),
            nonces=nonces,
        )
        self._pairs: dict[str, KrakenPair] = {}
        self._pairs_loaded_at = -float("inf")
        self._clock_synced_at = -float("inf")
        self._resync_reason: str | None = None

    def __repr__(self) -> str:
        return f"KrakenTrading(rest={self.rest!r}, symbols={list(self.symbols)!r})"

    @property
    def acceptance_window_ms(self) -> int:
        """Return how long after a send Kraken may still accept the order: the deadline + clock resolution."""
        return int(self.deadline_s * 1000) + CLOCK_RESOLUTION_MS

    # ----- lifecycle -------------------------------------------------------------------------

    async def _open(self) -> None:
        """Measure the clock offset and load the pairs' rules."""
        await self._sync_clock("start")
        await self._load_pairs()

    async def _shut(self) -> None:
        await self.rest.session.close()

    def _log_started(self) -> None:
        log.info("kraken_trading_started", url=self.rest.session.base_url, deadline_s=self.deadline_s)

    async def _ready(self) -> None:
        await self._ensure_started()
        if self._resync_reason is not None:
            await self._sync_clock(self._resync_reason)
        elif time.monotonic() - self._clock_synced_at >= self.clock_sync_interval_s:
            await self._sync_clock("scheduled")

    async def _sync_clock(self, reason: str) -> None:
        await measure_clock(self.clock, self.rest, reason=reason, max_wait_s=self.max_wait_s)
        self._clock_synced_at = time.monotonic()
        self._resync_reason = None

    async def _load_pairs(self) -> None:
        result = await self.rest.public(
            "/0/public/AssetPairs", action="asset pairs", max_wait_s=self.max_wait_s
        )
        self._pairs = parse_asset_pairs(result)
        self._pairs_loaded_at = time.monotonic()
        missing = [s for s in self.symbols if s not in self._pairs]
        log.info("kraken_pairs_loaded", pairs=len(self._pairs), unlisted=missing)

    async def _pair(self, symbol: str) -> KrakenPair:
        await self._ready()
        if time.monotonic() - self._pairs_loaded_at >= self.rules_ttl_s:
            await self._load_pairs()
        pair = self._pairs.get(validate_symbol(symbol))
        if pair is None:
            raise OrderRuleViolation(f"kraken does not list {symbol}")
        return pair

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        """Return the trading rules of a canonical symbol, from AssetPairs."""
        return (await self._pair(symbol)).rules

    # ----- orders ----------------------------------------------------------------------------

    async def place_order(
        self, symbol: str, side: Side, quantity: Decimal, price: Decimal, client_order_id: str
    ) -> OrderReport:
        """Place one IOC limit order with `deadline`; raise OutcomeUnknown when its fate is unknown."""
        if _UUID36.fullmatch(client_order_id) is None:
            raise OrderRuleViolation(
                f"kraken client order id must be a lower-case 36-character UUID, got {client_order_id!r}"
            )
        pair = await self._pair(symbol)
        params = {
            "ordertype": "limit",
            "type": side,
            "pair": pair.altname,
            "volume": decimal_text(quantity),
            "price": decimal_text(price),
            "timeinforce": "IOC",
            "oflags": "fciq",
            "cl_ord_id": client_order_id,
        }
        sent = self.rest.throttle.clock()
        try:
            result = await self.rest.private(
                "/0/private/AddOrder",
                params,
                action="place order",
                max_wait_s=self.order_max_wait_s,
                pair=pair.altname,
                may_execute=True,
                deadline_ms=int(self.deadline_s * 1000),
            )
        except VenueRejected as exc:
            if exc.code == DEADLINE_ELAPSED:  # refused, not executed; our clock may have drifted
                self._resync_reason = "rejected"
                log.warning("kraken_deadline_elapsed", client_order_id=client_order_id)
            raise
        txid = first_txid(result)
        if txid is None:
            raise OutcomeUnknown(f"kraken accepted order {client_order_id} with an unreadable answer")
        log.info("kraken_order_acknowledged", client_order_id=client_order_id, txid=txid)
        return await self._report_after_ack(pair, client_order_id, txid, sent)

    async def _report_after_ack(
        self, pair: KrakenPair, client_order_id: str, txid: str, sent: float
    ) -> OrderReport:
        """Look up an acknowledged order; OutcomeUnknown if it stays invisible for the acceptance window."""
        give_up = sent + self.acceptance_window_ms / 1000
        for pause in (*_ACK_QUERY_DELAYS_S, None):
            try:
                return await self._find(pair, client_order_id, txid=txid)
            except OrderNotFound:
                pass
            except (VenueError, ParseError) as exc:
                raise OrderAcknowledged(
                    f"kraken accepted order {client_order_id} as {txid}, but reading it failed: {exc}", txid
                ) from None
            if pause is None or self.rest.throttle.clock() + pause > give_up:
                break
            await self.rest.throttle.sleep(pause)
        raise OrderAcknowledged(
            f"kraken accepted order {client_order_id} as {txid}, but it is not visible yet; query it", txid
        )

    async def query_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Return the latest order with this client id (open first, then closed); OrderNotFound if none."""
        return await self._find(await self._pair(symbol), client_order_id)

    async def _find(self, pair: KrakenPair, client_order_id: str, *, txid: str | None = None) -> OrderReport:
        for path, key, cost in (
            ("/0/private/OpenOrders", "open", 1.0),
            ("/0/private/ClosedOrders", "closed", 2.0),
        ):
            result = await self.rest.private(
                path,
                {"cl_ord_id": client_order_id},
                action=f"query order ({key})",
                max_wait_s=self.max_wait_s,
                cost=cost,
            )
            found = latest_with_client_id(result, key, client_order_id, pair, txid)
            if found is not None:
                return parse_order(*found, pair.symbol)
        raise OrderNotFound("EOrder:Unknown order", f"no order {client_order_id}", 200, venue=VENUE)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Cancel the open order with this client id and return it; OrderNotFound if none is open."""
        pair = await self._pair(symbol)
        await self.rest.private(
            "/0/private/CancelOrder",
            {"cl_ord_id": client_order_id},
            action="cancel order",
            max_wait_s=self.max_wait_s,
            cost=8.0,  # a cancel within 5 s of the order's creation (the IOC case) costs the most
            pair=pair.altname,
        )
        return await self._find(pair, client_order_id)

    async def order_trades(self, symbol: str, report: OrderReport) -> tuple[TradeFill, ...]:
        """Return the order's executions with their fees (QueryOrders for its trade ids, then QueryTrades)."""
        pair = await self._pair(symbol)
        txid = report.venue_order_id
        result = await self.rest.private(
            "/0/private/QueryOrders",
            {"txid": txid, "trades": "true"},
            action="query order trades",
            max_wait_s=self.max_wait_s,
        )
        info = result.get(txid) if isinstance(result, dict) else None
        if info is None:
            raise OrderNotFound("EOrder:Unknown order", f"no order {txid}", 200, venue=VENUE)
        asset = fee_asset(info, report.side, pair.rules)
        fresh = parse_order(txid, info, pair.symbol)
        ids = trade_ids(info)
        fills: list[TradeFill] = []
        for start in range(0, len(ids), 20):  # QueryTrades takes at most 20 ids
            chunk = ",".join(ids[start : start + 20])
            trades = await self.rest.private(
                "/0/private/QueryTrades",
                {"txid": chunk},
                action="query trades",
                max_wait_s=self.max_wait_s,
                cost=2.0,
            )
            fills.extend(parse_trades(trades, txid, asset))
        if sum((f.quantity for f in fills), Decimal(0)) == fresh.executed_qty:
            return tuple(fills)
        return whole_order_fill(info, fresh, asset)  # trades not listed (yet): the order's exact totals

    async def open_orders(self) -> list[OrderReport]:
        """Return every open order of the account on the configured symbols."""
        await self._ready()
        result = await self.rest.private(
            "/0/private/OpenOrders", {}, action="open orders", max_wait_s=self.max_wait_s
        )
        by_altname = {p.altname: p for s, p in self._pairs.items() if s in self.symbols}
        reports = []
        for txid, info in mapping_of(result, "open").items():
            pair = by_altname.get(pair_of(info))
            if pair is not None:
                reports.append(parse_order(txid, info, pair.symbol))
        return reports

    # ----- account ---------------------------------------------------------------------------

    async def balances(self) -> dict[str, AccountBalance]:
        """Return the spot balances by canonical asset (BalanceEx: free = balance − hold_trade)."""
        await self._ready()
        result = await self.rest.private(
            "/0/private/BalanceEx", {}, action="balances", max_wait_s=self.max_wait_s
        )
        return parse_balances(result)

    async def taker_fee_bps(self, symbol: str) -> Decimal | None:
        """Return the account's taker fee on `symbol` in bps (TradeVolume), or None if Kraken omits it."""
        pair = await self._pair(symbol)
        result = await self.rest.private(
            "/0/private/TradeVolume",
            {"pair": pair.altname},
            action="trade volume",
            max_wait_s=self.max_wait_s,
        )
        return parse_taker_fee_bps(result, pair)


__all__ = ["NO_SANDBOX", "PRODUCTION_REST_URL", "KrakenCredentials", "KrakenTrading", "rfc3339_ms"]
