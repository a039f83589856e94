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

Most venue pairs of a symbol are nowhere near clearing the bar, and a quote
changes only the pairs of its own venue, so the work goes to the few that
matter: a float prefilter skips a pair only when it certainly cannot pay
(`router.sizing.Bounds`), a pair's exact sizing is reused while neither of its
quotes changed, and an event is built only when it is published. Every
published figure is computed in Decimal, exactly as the formulas above say.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Literal

import msgspec

from connectors.types import BPS, Quote, decimal_text
from router.cache import CachedQuote, PriceCache
from router.metrics import DETECTOR_LATENCY, OPPORTUNITIES, OPPORTUNITY_EVENTS
from router.precision import bps_down, money_down
from router.sizing import MIN_STEP, Bounds, Sized, Terms, size_with_terms, step_of

EventKind = Literal["opened", "updated", "closed"]

_NS_PER_MS = 1_000_000
_BPS_PLACES = Decimal("0.001")

_Key = tuple[str, str, str]


class Opportunity(msgspec.Struct, frozen=True, gc=False):
    """One event of an arbitrage opportunity's lifecycle (the Kafka Opportunity message).

    A frozen msgspec Struct rather than a dataclass: it is built on the detector's hot path,
    between a quote's arrival and the event, and costs a tenth as much to build.
    """

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
        """Return the contract's JSON object: decimals as strings, `"v": 1`, at the published precision.

        The prices and the quantity are published as sized (`router.sizing` rounds the
        VWAPs); `net_profit` is rounded down to 8 decimals and the spreads down to 2
        decimals (`router.precision`), so no published figure is better than the truth.
        """
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
            "gross_spread_bps": decimal_text(bps_down(self.gross_spread_bps)),
            "net_spread_bps": decimal_text(bps_down(self.net_spread_bps)),
            "net_profit": decimal_text(money_down(self.net_profit)),
            "buy_fee_bps": decimal_text(self.buy_fee_bps),
            "sell_fee_bps": decimal_text(self.sell_fee_bps),
            "buy_quote_age_ms": self.buy_quote_age_ms,
            "sell_quote_age_ms": self.sell_quote_age_ms,
            "detected_ns": self.detected_ns,
            "expires_ns": self.expires_ns,
        }


def _age_ms(age_ns: int) -> float:
    """Return `round(age_ns / 1e6, 3)`, the published age, mostly without its costly decimal rounding.

    Off an exact tie, the float quotient's error (under 1e-16 relative) cannot move it across
    the rounding boundary, which is at least 1 ns away: integer rounding gives the same millisecond.
    """
    if 0 <= age_ns < 1 << 52 and age_ns % 1_000 != 500:
        return ((age_ns + 500) // 1_000) / 1_000
    return round(age_ns / _NS_PER_MS, 3)


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


class _Top:
    """A venue's cache entry as the detector evaluates it, with what it works out once per quote.

    The bounds rule out, in two float comparisons, the many pairs that cannot pay (`Bounds`);
    the quantity steps are worked out when the quote is first sized, once for all its pairs.
    """

    __slots__ = ("ask_step", "bid_step", "cost_bound", "entry", "fee_bps", "proceeds_bound", "quote")

    def __init__(self, entry: CachedQuote, fee_bps: Decimal, bounds: Bounds) -> None:
        quote = entry.quote
        self.entry = entry
        self.quote = quote
        self.fee_bps = fee_bps
        self.proceeds_bound = bounds.proceeds(quote.bid, quote.bids)
        self.cost_bound = bounds.cost(quote.ask, quote.asks)
        self.ask_step: Decimal | None = None
        self.bid_step: Decimal | None = None


def _step_between(buy: _Top, sell: _Top) -> Decimal:
    """Return `router.sizing.quantity_step` of the pair's books, working out each book's step once."""
    ask_step = buy.ask_step
    if ask_step is None:
        ask_step = buy.ask_step = step_of(buy.quote.ask_qty)
    bid_step = sell.bid_step
    if bid_step is None:
        bid_step = sell.bid_step = step_of(sell.quote.bid_qty)
    return min(ask_step, bid_step, MIN_STEP)


class ArbitrageDetector:
    """Turn quote updates into opened/updated/closed opportunity events.

    `on_event` is called synchronously for every event, in order. The cache's
    clock gives quote ages; `wall_clock_ns` gives `detected_ns`/`expires_ns`.
    The fees and thresholds are fixed at construction.
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
        self.on_event = on_event
        self.wall_clock_ns = wall_clock_ns
        self._taker_fee_bps = dict(taker_fee_bps)
        self._min_net_profit_bps = min_net_profit_bps
        self._max_notional = max_notional
        self._update_min_change_bps = update_min_change_bps
        self._venues = {
            v: (fee, Bounds.of(fee, min_net_profit_bps)) for v, fee in self._taker_fee_bps.items()
        }
        self._terms = {
            (buy, sell): Terms.of(buy_fee, sell_fee, min_net_profit_bps, max_notional)
            for buy, buy_fee in self._taker_fee_bps.items()
            for sell, sell_fee in self._taker_fee_bps.items()
        }
        self._counters = {event: OPPORTUNITIES.labels(event=event) for event in OPPORTUNITY_EVENTS}
        self._open: dict[_Key, Opportunity] = {}
        self._open_by_symbol: dict[str, set[_Key]] = {}  # so a quote checks only its symbol
        self._tops: dict[str, dict[str, _Top]] = {}  # symbol -> venue -> the entry last evaluated
        self._sized: dict[_Key, tuple[Quote, Quote, Sized | None]] = {}  # each pair's last sizing, by quotes
        self._trigger: Quote | None = None  # the quote being evaluated, for latency
        self._published: list[EventKind] = []  # events not yet counted in the metrics
        self._latencies_ns: list[int] = []  # and their latencies, when a quote triggered them

    @property
    def taker_fee_bps(self) -> Mapping[str, Decimal]:
        """Taker fee per venue; a venue without one is never traded against."""
        return self._taker_fee_bps

    @property
    def min_net_profit_bps(self) -> Decimal:
        """The net spread an opportunity must exceed, in bps of its buy notional."""
        return self._min_net_profit_bps

    @property
    def max_notional(self) -> Decimal:
        """The cap on an opportunity's buy notional, in quote currency."""
        return self._max_notional

    @property
    def update_min_change_bps(self) -> Decimal:
        """How far a VWAP must move, in bps, for an open opportunity to be re-published."""
        return self._update_min_change_bps

    def on_quote(self, quote: Quote) -> None:
        """Re-evaluate the quote's symbol across venues; call it after the cache took the quote."""
        symbol = quote.symbol
        if self.cache.venue_count(symbol) < 2 and symbol not in self._open_by_symbol:
            return  # one venue quotes it and nothing is open on it: nothing can open or close
        self._trigger = quote
        try:
            self.evaluate(symbol)
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
        try:
            self._evaluate(symbol)
        finally:
            if self._published:
                self._flush_metrics()

    def _evaluate(self, symbol: str) -> None:
        fresh = self.cache.fresh(symbol)
        seen: set[_Key] = set()
        if len(fresh) > 1:
            now_ns = self.cache.clock_ns()
            tops = self._tops_of(symbol, fresh)
            for buy in tops:
                for sell in tops:
                    # The cache holds no quote that cannot be true (crossed, a price not positive):
                    # `PriceCache.update` refuses it, whatever a feed sends, so none is ever paired here.
                    # Float bounds first, then the exact top of book: no spread before fees, no opportunity.
                    if sell.proceeds_bound < buy.cost_bound or buy is sell or sell.quote.bid <= buy.quote.ask:
                        continue
                    key = (symbol, buy.quote.venue, sell.quote.venue)
                    if self._consider(key, buy, sell, now_ns):
                        seen.add(key)
        still_open = self._open_by_symbol.get(symbol)
        if still_open:
            for key in sorted(still_open - seen):
                self._close(key)

    def _tops_of(self, symbol: str, fresh: Mapping[str, CachedQuote]) -> list[_Top]:
        """Return the fresh entries of venues with a fee, in the cache's order, with their bounds."""
        known = self._tops.get(symbol)
        if known is None:
            known = self._tops[symbol] = {}
        tops = []
        for venue_id, entry in fresh.items():
            top = known.get(venue_id)
            if top is None or top.entry is not entry:
                venue = self._venues.get(venue_id)
                if venue is None:
                    continue  # a venue without a configured fee is never traded against
                top = known[venue_id] = _Top(entry, *venue)
            tops.append(top)
        return tops

    def _consider(self, key: _Key, buy: _Top, sell: _Top, now_ns: int) -> bool:
        _, buy_venue, sell_venue = key
        terms = self._terms[buy_venue, sell_venue]
        memo = self._sized.get(key)
        if memo is not None and memo[0] is buy.quote and memo[1] is sell.quote:
            sized = memo[2]  # neither book changed since this pair was sized
        else:
            asks, bids = buy.quote.ask_levels(), sell.quote.bid_levels()
            sized = size_with_terms(asks, bids, terms, _step_between(buy, sell))
            self._sized[key] = (buy.quote, sell.quote, sized)
        if sized is None:
            return False
        previous = self._open.get(key)
        if previous is None:
            keys = self._open_by_symbol.get(key[0])
            if keys is None:
                self._open_by_symbol[key[0]] = {key}
            else:
                keys.add(key)
            self._emit(key, self._event("opened", key, sized, terms, buy, sell, now_ns, None))
        elif self._moved(previous, sized):
            self._emit(key, self._event("updated", key, sized, terms, buy, sell, now_ns, previous.id))
        return True

    def _event(
        self,
        event: EventKind,
        key: _Key,
        sized: Sized,
        terms: Terms,
        buy: _Top,
        sell: _Top,
        now_ns: int,
        id_: str | None,
    ) -> Opportunity:
        symbol, buy_venue, sell_venue = key
        quantity, buy_price, sell_price = sized.quantity, sized.buy_price, sized.sell_price
        net_profit = quantity * (sell_price * terms.keep_on_sell - buy_price * terms.pay_on_buy)
        buy_age = now_ns - buy.entry.stored_ns
        sell_age = now_ns - sell.entry.stored_ns
        detected_ns = self.wall_clock_ns()
        remaining_ns = max(0, self.cache.max_quote_age_ns - max(buy_age, sell_age))
        # Positional, in field order: a tenth of the cost of keywords on this path.
        return Opportunity(
            event,
            id_ if id_ is not None else opportunity_id(symbol, buy.quote, sell.quote),
            symbol,
            buy_venue,
            sell_venue,
            quantity,
            buy_price,
            sell_price,
            ((sell_price - buy_price) / buy_price * BPS).quantize(_BPS_PLACES, ROUND_DOWN),  # gross bps
            (net_profit / (quantity * buy_price) * BPS).quantize(_BPS_PLACES, ROUND_DOWN),  # net bps
            net_profit,
            buy.fee_bps,
            sell.fee_bps,
            _age_ms(buy_age),
            _age_ms(sell_age),
            detected_ns,
            detected_ns + remaining_ns,
        )

    def _moved(self, previous: Opportunity, sized: Sized) -> bool:
        if sized.quantity != previous.quantity:
            return True
        threshold = self._update_min_change_bps
        for old, new in ((previous.buy_price, sized.buy_price), (previous.sell_price, sized.sell_price)):
            if new != old and abs(new - old) / old * BPS >= threshold:
                return True
        return False

    def _emit(self, key: _Key, event: Opportunity) -> None:
        """Record `event` as the open pair's latest (its symbol is indexed already) and publish it."""
        self._open[key] = event
        self._publish(event)

    def _publish(self, event: Opportunity) -> None:
        self.on_event(event)
        # Metrics are updated once the symbol's events are all out (`_flush_metrics`): a later
        # event of the same quote should not wait for the metric locks of an earlier one.
        self._published.append(event.event)
        if self._trigger is not None:
            self._latencies_ns.append(self.wall_clock_ns() - self._trigger.received_ns)

    def _flush_metrics(self) -> None:
        for event in self._published:
            self._counters[event].inc()
        self._published.clear()
        for latency_ns in self._latencies_ns:
            DETECTOR_LATENCY.observe(max(0, latency_ns) / 1e9)
        self._latencies_ns.clear()

    def _close(self, key: _Key) -> None:
        last = self._open.pop(key)
        keys = self._open_by_symbol[key[0]]
        keys.discard(key)
        if not keys:
            del self._open_by_symbol[key[0]]
        self._publish(msgspec.structs.replace(last, event="closed", detected_ns=self.wall_clock_ns()))
