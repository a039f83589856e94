"""Cross-venue arbitrage detection on top-of-book quotes, fee-aware, in Decimal.

For a symbol, buying on venue A at its ask and selling on venue B at its bid
nets, per unit of base asset and with fees as fractions `f = fee_bps / 10⁴`:

    sell_price × (1 − f_sell) − buy_price × (1 + f_buy)

An opportunity exists when that margin, as bps of the buy notional, exceeds
`min_net_profit_bps`. With depth, its size is the largest quantity whose VWAP
buy on one book and VWAP sell on the other still clear that bar
(`router.sizing`), capped so the buy notional stays within `max_notional`;
`buy_price`/`sell_price` are those VWAPs. A top-of-book venue is a one-level
book. Only fresh quotes (within the cache's `max_quote_age_ms`) are ever used.

Each (symbol, buy venue, sell venue) has a lifecycle: `opened` when it first
clears the threshold, `updated` when a published figure moves meaningfully,
`closed` when it no longer clears (spread gone, a quote stale or gone).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal
from typing import Literal

from connectors.types import Quote, decimal_text
from router.cache import CachedQuote, PriceCache
from router.metrics import DETECTOR_LATENCY, OPPORTUNITIES
from router.sizing import size_opportunity

EventKind = Literal["opened", "updated", "closed"]

_BPS = Decimal(10_000)
_NS_PER_MS = 1_000_000
_BPS_PLACES = Decimal("0.001")
_MIN_STEP = Decimal("1e-8")


@dataclass(frozen=True, slots=True)
class Opportunity:
    """One event of an arbitrage opportunity's lifecycle (the Kafka Opportunity message)."""

    event: EventKind
    id: str
    symbol: str
    buy_venue: str
    sell_venue: str
    quantity: Decimal
    buy_price: Decimal
    sell_price: Decimal
    gross_spread_bps: Decimal
    net_spread_bps: Decimal
    net_profit: Decimal
    buy_fee_bps: Decimal
    sell_fee_bps: Decimal
    buy_quote_age_ms: float
    sell_quote_age_ms: float
    detected_ns: int
    expires_ns: int

    def as_message(self) -> dict[str, object]:
        """Return the contract's JSON object: decimals as strings, `"v": 1`."""
        return {
            "v": 1,
            "event": self.event,
            "id": self.id,
            "symbol": self.symbol,
            "buy_venue": self.buy_venue,
            "sell_venue": self.sell_venue,
            "quantity": decimal_text(self.quantity),
            "buy_price": decimal_text(self.buy_price),
            "sell_price": decimal_text(self.sell_price),
            "gross_spread_bps": decimal_text(self.gross_spread_bps),
            "net_spread_bps": decimal_text(self.net_spread_bps),
            "net_profit": decimal_text(self.net_profit),
            "buy_fee_bps": decimal_text(self.buy_fee_bps),
            "sell_fee_bps": decimal_text(self.sell_fee_bps),
            "buy_quote_age_ms": self.buy_quote_age_ms,
            "sell_quote_age_ms": self.sell_quote_age_ms,
            "detected_ns": self.detected_ns,
            "expires_ns": self.expires_ns,
        }


@dataclass(frozen=True, slots=True)
class Edge:
    """The exact economics of buying `quantity` on one venue and selling it on another."""

    quantity: Decimal
    buy_price: Decimal
    sell_price: Decimal
    buy_fee_bps: Decimal
    sell_fee_bps: Decimal

    @property
    def net_profit(self) -> Decimal:
        """Quote-currency profit after both taker fees."""
        f_buy = self.buy_fee_bps / _BPS
        f_sell = self.sell_fee_bps / _BPS
        return self.quantity * (self.sell_price * (1 - f_sell) - self.buy_price * (1 + f_buy))

    @property
    def gross_spread_bps(self) -> Decimal:
        """(sell − buy) / buy in bps, before fees."""
        return (self.sell_price - self.buy_price) / self.buy_price * _BPS

    @property
    def net_spread_bps(self) -> Decimal:
        """Net profit as bps of the buy notional."""
        return self.net_profit / (self.quantity * self.buy_price) * _BPS


def quantity_step(buy: Quote, sell: Quote) -> Decimal:
    """Return the size step: the finer of the two books' quantity precisions, and at least 8 decimals.

    A venue showing "0.5" may well trade 0.15625, so the step is never coarser than 1e-8.
    """
    return min(_step_of(buy.ask_qty), _step_of(sell.bid_qty), _MIN_STEP)


def _step_of(value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    return Decimal(1).scaleb(exponent if isinstance(exponent, int) and exponent < 0 else 0)


def opportunity_id(symbol: str, buy: Quote, sell: Quote) -> str:
    """Return a stable id for an opportunity opened on this exact pair of book states."""
    material = "|".join(
        (
            symbol,
            buy.venue,
            sell.venue,
            str(buy.ask),
            str(buy.ask_qty),
            str(buy.seq),
            str(sell.bid),
            str(sell.bid_qty),
            str(sell.seq),
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()[:24]


class ArbitrageDetector:
    """Turn quote updates into opened/updated/closed opportunity events.

    `on_event` is called synchronously for every event, in order. The cache's
    clock gives quote ages; `wall_clock_ns` gives `detected_ns`/`expires_ns`.
    """

    def __init__(
        self,
        cache: PriceCache,
        taker_fee_bps: Mapping[str, Decimal],
        on_event: Callable[[Opportunity], None],
        *,
        min_net_profit_bps: Decimal = Decimal(5),
        max_notional: Decimal = Decimal(10_000),
        update_min_change_bps: Decimal = Decimal(1),
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.cache = cache
        self.taker_fee_bps = dict(taker_fee_bps)
        self.on_event = on_event
        self.min_net_profit_bps = min_net_profit_bps
        self.max_notional = max_notional
        self.update_min_change_bps = update_min_change_bps
        self.wall_clock_ns = wall_clock_ns
        self._open: dict[tuple[str, str, str], Opportunity] = {}
        self._open_by_symbol: dict[str, set[tuple[str, str, str]]] = {}  # so a quote checks only its symbol
        self._trigger: Quote | None = None  # the quote being evaluated, for latency

    def on_quote(self, quote: Quote) -> None:
        """Re-evaluate the quote's symbol across venues; call it after the cache took the quote."""
        self._trigger = quote
        try:
            self.evaluate(quote.symbol)
        finally:
            self._trigger = None

    def sweep(self) -> None:
        """Re-evaluate every symbol with an open opportunity, closing those whose quotes went stale."""
        for symbol in sorted(self._open_by_symbol):  # sorted: the same events in the same order on replay
            self.evaluate(symbol)

    def open_opportunities(self) -> list[Opportunity]:
        """Return the latest event of every opportunity open now."""
        return list(self._open.values())

    def evaluate(self, symbol: str) -> None:
        """Publish what changed for `symbol`: new, moved and vanished opportunities."""
        fresh = self.cache.fresh(symbol)
        seen: set[tuple[str, str, str]] = set()
        if len(fresh) > 1:
            now_ns = self.cache.clock_ns()
            for buy_venue, buy in fresh.items():
                for sell_venue, sell in fresh.items():
                    # Cheap prefilter on exact values: no spread before fees, no opportunity.
                    if buy_venue == sell_venue or sell.quote.bid <= buy.quote.ask:
                        continue
                    key = (symbol, buy_venue, sell_venue)
                    if self._consider(key, buy, sell, now_ns):
                        seen.add(key)
        still_open = self._open_by_symbol.get(symbol)
        if still_open:
            for key in sorted(still_open - seen):
                self._close(key)

    def _consider(self, key: tuple[str, str, str], buy: CachedQuote, sell: CachedQuote, now_ns: int) -> bool:
        fee_buy = self.taker_fee_bps.get(buy.quote.venue)
        fee_sell = self.taker_fee_bps.get(sell.quote.venue)
        if fee_buy is None or fee_sell is None:
            return False  # a venue without a configured fee is never traded against
        sized = size_opportunity(
            buy.quote.ask_levels(),
            sell.quote.bid_levels(),
            fee_buy,
            fee_sell,
            self.min_net_profit_bps,
            self.max_notional,
            quantity_step(buy.quote, sell.quote),
        )
        if sized is None:
            return False
        edge = Edge(sized.quantity, sized.buy_price, sized.sell_price, fee_buy, fee_sell)
        previous = self._open.get(key)
        candidate = self._event(key, edge, buy, sell, now_ns, previous)
        if previous is None:
            self._emit(candidate)
        elif self._moved(previous, candidate):
            self._emit(replace(candidate, event="updated"))
        return True

    def _event(
        self,
        key: tuple[str, str, str],
        edge: Edge,
        buy: CachedQuote,
        sell: CachedQuote,
        now_ns: int,
        previous: Opportunity | None,
    ) -> Opportunity:
        symbol, buy_venue, sell_venue = key
        buy_age = buy.age_ns(now_ns)
        sell_age = sell.age_ns(now_ns)
        detected_ns = self.wall_clock_ns()
        remaining_ns = max(0, self.cache.max_quote_age_ns - max(buy_age, sell_age))
        return Opportunity(
            event="opened",
            id=previous.id if previous else opportunity_id(symbol, buy.quote, sell.quote),
            symbol=symbol,
            buy_venue=buy_venue,
            sell_venue=sell_venue,
            quantity=edge.quantity,
            buy_price=edge.buy_price,
            sell_price=edge.sell_price,
            gross_spread_bps=edge.gross_spread_bps.quantize(_BPS_PLACES, rounding=ROUND_DOWN),
            net_spread_bps=edge.net_spread_bps.quantize(_BPS_PLACES, rounding=ROUND_DOWN),
            net_profit=edge.net_profit,
            buy_fee_bps=edge.buy_fee_bps,
            sell_fee_bps=edge.sell_fee_bps,
            buy_quote_age_ms=round(buy_age / _NS_PER_MS, 3),
            sell_quote_age_ms=round(sell_age / _NS_PER_MS, 3),
            detected_ns=detected_ns,
            expires_ns=detected_ns + remaining_ns,
        )

    def _moved(self, previous: Opportunity, current: Opportunity) -> bool:
        if current.quantity != previous.quantity:
            return True
        threshold = self.update_min_change_bps
        for old, new in ((previous.buy_price, current.buy_price), (previous.sell_price, current.sell_price)):
            if abs(new - old) / old * _BPS >= threshold and new != old:
                return True
        return False

    def _emit(self, event: Opportunity) -> None:
        key = (event.symbol, event.buy_venue, event.sell_venue)
        if event.event == "closed":
            self._open.pop(key, None)
            keys = self._open_by_symbol.get(event.symbol)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._open_by_symbol[event.symbol]
        else:
            self._open[key] = event
            self._open_by_symbol.setdefault(event.symbol, set()).add(key)
        self.on_event(event)
        OPPORTUNITIES.labels(event=event.event).inc()
        if self._trigger is not None:
            DETECTOR_LATENCY.observe(max(0, self.wall_clock_ns() - self._trigger.received_ns) / 1e9)

    def _close(self, key: tuple[str, str, str]) -> None:
        last = self._open[key]
        self._emit(replace(last, event="closed", detected_ns=self.wall_clock_ns()))
