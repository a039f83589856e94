"""ArbitrageDetector: fee-aware economics, lifecycle, staleness and ids, on a fake clock."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from connectors.types import Level, Quote
from router.cache import PriceCache
from router.detector import ArbitrageDetector, Opportunity

MS = 1_000_000
FEES = {"binance": Decimal(10), "bybit": Decimal(10), "okx": Decimal(10)}


class Clock:
    def __init__(self) -> None:
        self.now_ns = 10_000 * MS

    def __call__(self) -> int:
        return self.now_ns

    def advance_ms(self, ms: float) -> None:
        self.now_ns += int(ms * MS)


class Harness:
    def __init__(self, **detector_options: Decimal) -> None:
        self.clock = Clock()
        self.cache = PriceCache(ttl_ms=30_000, max_quote_age_ms=1_500, clock_ns=self.clock)
        self.events: list[Opportunity] = []
        self.detector = ArbitrageDetector(
            self.cache, FEES, self.events.append, wall_clock_ns=self.clock, **detector_options
        )

    def quote(
        self,
        venue: str,
        bid: str,
        bid_qty: str,
        ask: str,
        ask_qty: str,
        seq: int = 1,
        symbol: str = "BTC-USDT",
    ) -> None:
        q = Quote(venue, symbol, Decimal(bid), Decimal(bid_qty), Decimal(ask), Decimal(ask_qty), None, 0, seq)
        self.cache.update(q)
        self.detector.on_quote(q)


def test_fee_aware_opportunity_is_computed_exactly() -> None:
    h = Harness(min_net_profit_bps=Decimal(5), max_notional=Decimal(10_000))
    h.quote("binance", "63990.00", "1.00000", "64000.00", "0.50000")
    h.quote("bybit", "64200.00", "0.30000", "64210.00", "1.00000")
    # Buy on binance at 64000, sell on bybit at 64200, 10 bps taker each side:
    #   per unit: 64200 × 0.999 − 64000 × 1.001 = 64135.8 − 64064 = 71.8
    #   size: min(0.5, 0.3) = 0.3, capped by 10000 / 64000 = 0.15625
    #   net_profit = 0.15625 × 71.8 = 11.21875
    #   gross = (64200 − 64000) / 64000 × 10⁴ = 31.25 bps
    #   net = 11.21875 / (0.15625 × 64000) × 10⁴ = 11.21875 bps (published to 3 places, rounded down)
    [event] = h.events
    assert event.event == "opened"
    assert (event.buy_venue, event.sell_venue) == ("binance", "bybit")
    assert event.quantity == Decimal("0.15625")
    assert event.buy_price == Decimal("64000.00") and event.sell_price == Decimal("64200.00")
    assert event.net_profit == Decimal("11.21875")
    assert event.gross_spread_bps == Decimal("31.250")
    assert event.net_spread_bps == Decimal("11.218")
    message = event.as_message()
    assert message["v"] == 1
    assert message["quantity"] == "0.15625" and message["net_profit"] == "11.21875"
    assert message["buy_fee_bps"] == "10" and message["expires_ns"] == h.clock.now_ns + 1_500 * MS


def test_size_is_smaller_top_of_book_when_under_notional_cap() -> None:
    h = Harness(max_notional=Decimal(1_000_000))
    h.quote("binance", "99", "5", "100", "2")
    h.quote("bybit", "101", "0.75", "102", "5")
    # Per unit: 101 × 0.999 − 100 × 1.001 = 100.899 − 100.1 = 0.799; size min(2, 0.75) = 0.75
    # net = 0.75 × 0.799 = 0.59925; net bps = 0.59925 / 75 × 10⁴ = 79.9
    [event] = h.events
    assert event.quantity == Decimal("0.75")
    assert event.net_profit == Decimal("0.59925")
    assert event.net_spread_bps == Decimal("79.900")


def test_no_opportunity_when_net_spread_is_at_or_below_threshold() -> None:
    h = Harness(min_net_profit_bps=Decimal(5))
    # Gross 25 bps − 20 bps of fees ≈ 5 bps (slightly less, fees are taken on each leg's price): no event.
    h.quote("binance", "9999", "1", "10000", "1")
    h.quote("bybit", "10025", "1", "10030", "1")
    # 10025 × 0.999 − 10000 × 1.001 = 10014.975 − 10010 = 4.975 per unit → 4.975 bps ≤ 5
    assert h.events == []


def test_spread_that_does_not_cover_fees_is_ignored() -> None:
    h = Harness(min_net_profit_bps=Decimal(0))
    h.quote("binance", "9999", "1", "10000", "1")
    h.quote("bybit", "10015", "1", "10016", "1")  # 15 bps gross < 20 bps of fees
    assert h.events == []


def test_stale_quote_is_never_used_and_closes_the_opportunity() -> None:
    h = Harness()
    h.quote("binance", "99", "1", "100", "1")
    h.quote("bybit", "102", "1", "103", "1")
    assert [e.event for e in h.events] == ["opened"]
    h.clock.advance_ms(1_501)
    h.detector.sweep()
    assert [e.event for e in h.events] == ["opened", "closed"]
    # A fresh quote on one side alone must not reopen it against the stale other side.
    h.quote("bybit", "102", "1", "103", "1", seq=2)
    assert [e.event for e in h.events] == ["opened", "closed"]


def test_a_symbol_one_venue_quotes_is_not_looked_up_until_a_second_venue_quotes_it() -> None:
    h = Harness()
    for seq in range(1, 4):
        h.quote("binance", "99", "1", "100", "1", seq=seq)
    assert h.events == [] and (h.cache.stats().hits, h.cache.stats().misses) == (0, 0)
    h.quote("bybit", "102", "1", "103", "1")
    assert [e.event for e in h.events] == ["opened"]
    assert h.cache.stats().hits == 1  # one lookup, once the symbol had a pair


def test_an_open_opportunity_still_closes_when_its_other_venue_drops_out_of_the_cache() -> None:
    h = Harness()
    h.quote("binance", "99", "1", "100", "1")
    h.quote("bybit", "102", "1", "103", "1")
    h.cache.invalidate("bybit", "BTC-USDT")  # one venue left: the next quote must still close it
    h.quote("binance", "99", "1", "100", "1", seq=2)
    assert [e.event for e in h.events] == ["opened", "closed"]


def test_lifecycle_opened_updated_closed_with_one_id() -> None:
    h = Harness(update_min_change_bps=Decimal(1))
    h.quote("binance", "99", "1", "100", "1")
    h.quote("bybit", "102", "1", "103", "1")
    h.quote("bybit", "102.001", "1", "103", "1", seq=2)  # moves 0.098 bps < 1 bps: not re-published
    h.quote("bybit", "102.5", "1", "103", "1", seq=3)  # moves ~49 bps: updated
    h.quote("bybit", "99", "1", "100", "1", seq=4)  # spread gone: closed
    assert [e.event for e in h.events] == ["opened", "updated", "closed"]
    assert len({e.id for e in h.events}) == 1
    assert h.events[1].sell_price == Decimal("102.5")
    assert h.detector.open_opportunities() == []


def test_quantity_change_is_an_update() -> None:
    h = Harness()
    h.quote("binance", "99", "1", "100", "1")
    h.quote("bybit", "102", "1", "103", "1")
    h.quote("binance", "99", "1", "100", "0.5", seq=2)
    assert [e.event for e in h.events] == ["opened", "updated"]
    assert h.events[-1].quantity == Decimal("0.5")


def test_id_is_deterministic_for_the_same_book_state_and_differs_otherwise() -> None:
    first, second, other = Harness(), Harness(), Harness()
    for h in (first, second):
        h.quote("binance", "99", "1", "100", "1", seq=7)
        h.quote("bybit", "102", "1", "103", "1", seq=9)
    other.quote("binance", "99", "1", "100", "1", seq=8)
    other.quote("bybit", "102", "1", "103", "1", seq=9)
    assert first.events[0].id == second.events[0].id
    assert first.events[0].id != other.events[0].id


def test_venue_without_configured_fee_is_never_traded() -> None:
    h = Harness()
    h.quote("binance", "99", "1", "100", "1")
    h.quote("kraken", "110", "1", "111", "1")
    assert h.events == []


def test_each_profitable_venue_pair_is_its_own_opportunity() -> None:
    h = Harness()
    h.quote("binance", "99", "1", "100", "1")
    h.quote("bybit", "102", "1", "103", "1")
    h.quote("okx", "102.5", "1", "103", "1")
    pairs = {(e.buy_venue, e.sell_venue) for e in h.events}
    assert pairs == {("binance", "bybit"), ("binance", "okx")}


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100_000), places=2)
sizes = st.decimals(min_value=Decimal("0.00001"), max_value=Decimal(50), places=5)
fees = st.decimals(min_value=Decimal(0), max_value=Decimal(150), places=1)


@settings(max_examples=300, deadline=None)
@given(
    buy_ask=prices,
    sell_bid=prices,
    ask_qty=sizes,
    bid_qty=sizes,
    fee_buy=fees,
    fee_sell=fees,
    threshold=st.decimals(min_value=Decimal(0), max_value=Decimal(50), places=1),
    notional=st.decimals(min_value=Decimal(1), max_value=Decimal(1_000_000), places=0),
)
def test_published_opportunity_always_nets_a_profit_after_fees(
    buy_ask: Decimal,
    sell_bid: Decimal,
    ask_qty: Decimal,
    bid_qty: Decimal,
    fee_buy: Decimal,
    fee_sell: Decimal,
    threshold: Decimal,
    notional: Decimal,
) -> None:
    clock = Clock()
    cache = PriceCache(clock_ns=clock)
    events: list[Opportunity] = []
    detector = ArbitrageDetector(
        cache,
        {"binance": fee_buy, "bybit": fee_sell},
        events.append,
        min_net_profit_bps=threshold,
        max_notional=notional,
        wall_clock_ns=clock,
    )
    for q in (
        Quote("binance", "X-Y", buy_ask / 2, ask_qty, buy_ask, ask_qty, None, 0, 1),
        Quote("bybit", "X-Y", sell_bid, bid_qty, sell_bid * 2, bid_qty, None, 0, 1),
    ):
        cache.update(q)
        detector.on_quote(q)
    for event in events:
        assert event.event == "opened"
        assert event.net_profit > 0
        assert event.quantity <= min(ask_qty, bid_qty)
        assert event.quantity * event.buy_price <= notional
        # Recompute from the published figures alone, as a consumer would.
        f_b, f_s = event.buy_fee_bps / 10_000, event.sell_fee_bps / 10_000
        recomputed = event.quantity * (event.sell_price * (1 - f_s) - event.buy_price * (1 + f_b))
        assert recomputed == event.net_profit
        assert recomputed / (event.quantity * event.buy_price) * 10_000 > threshold
        assert_published_figures_recompute(event.as_message(), threshold)


def assert_published_figures_recompute(message: dict[str, object], threshold: Decimal) -> None:
    """What the schema promises a consumer: recompute from the published strings, within their precision."""
    decimals = ("quantity", "buy_price", "sell_price", "buy_fee_bps", "sell_fee_bps")
    figures = {name: Decimal(str(message[name])) for name in (*decimals, "net_profit", "net_spread_bps")}
    figures["gross_spread_bps"] = Decimal(str(message["gross_spread_bps"]))
    quantity, buy, sell = figures["quantity"], figures["buy_price"], figures["sell_price"]
    f_b, f_s = figures["buy_fee_bps"] / 10_000, figures["sell_fee_bps"] / 10_000
    net = quantity * (sell * (1 - f_s) - buy * (1 + f_b))
    net_profit = figures["net_profit"]
    assert net_profit > 0  # what is published nets a profit
    assert net_profit <= net < net_profit + Decimal("0.00000001")  # money: 8 decimals, rounded down
    net_bps = net / (quantity * buy) * 10_000
    assert net_bps > threshold
    assert figures["net_spread_bps"] <= net_bps < figures["net_spread_bps"] + Decimal("0.01")
    gross_bps = (sell - buy) / buy * 10_000
    assert figures["gross_spread_bps"] <= gross_bps < figures["gross_spread_bps"] + Decimal("0.01")
    for name in ("net_profit", "net_spread_bps", "gross_spread_bps"):
        assert -figures[name].as_tuple().exponent <= (8 if name == "net_profit" else 2)  # type: ignore[operator]


@pytest.mark.parametrize(("max_notional", "quantity"), [("0.001", "0.00000001"), ("1", "0.00001")])
def test_notional_cap_rounds_the_size_down_to_a_step(max_notional: str, quantity: str) -> None:
    h = Harness(max_notional=Decimal(max_notional))
    h.quote("binance", "99999", "1", "100000", "1")
    h.quote("bybit", "102000", "1", "102001", "1")
    # 0.001 / 100000 = 1e-8 (one step); 1 / 100000 = 0.00001.
    [event] = h.events
    assert event.quantity == Decimal(quantity)


def test_notional_cap_below_one_step_gives_no_opportunity() -> None:
    h = Harness(max_notional=Decimal("0.0001"))
    h.quote("binance", "99999", "1", "100000", "1")
    h.quote("bybit", "102000", "1", "102001", "1")
    # 0.0001 / 100000 = 1e-9 rounds down to 0 at 8 decimals: nothing to trade.
    assert h.events == []


def book_quote(venue: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], seq: int = 1) -> Quote:
    b = tuple((Decimal(p), Decimal(q)) for p, q in bids)
    a = tuple((Decimal(p), Decimal(q)) for p, q in asks)
    return Quote(venue, "BTC-USDT", b[0][0], b[0][1], a[0][0], a[0][1], None, 0, seq, b, a)


def depth_harness(**options: Decimal) -> Harness:
    return Harness(min_net_profit_bps=Decimal(5), max_notional=Decimal(1_000_000), **options)


def test_depth_aware_size_walks_both_books_to_the_last_level_that_pays() -> None:
    h = depth_harness()
    for q in (
        book_quote("binance", [("90", "1")], [("100", "1"), ("101", "1"), ("102", "2")]),
        book_quote("bybit", [("103", "0.5"), ("102.5", "1"), ("101", "5")], [("110", "1")]),
    ):
        h.cache.update(q)
        h.detector.on_quote(q)
    # Buying all 4 on binance: 100 + 101 + 2 × 102 = 405 → VWAP 101.25.
    # Selling 4 on bybit: 0.5 × 103 + 1 × 102.5 + 2.5 × 101 = 406.5 → VWAP 101.625.
    # net = 4 × (101.625 × 0.999 − 101.25 × 1.001) = 4 × 0.172125 = 0.6885 → 0.6885 / 405 × 10⁴ = 17 bps > 5.
    # The ask book ends at 4: nothing larger can be bought, so 4 is the size.
    [event] = h.events
    assert event.quantity == Decimal(4)
    assert (event.buy_price, event.sell_price) == (Decimal("101.25"), Decimal("101.625"))
    assert event.net_profit == Decimal("0.6885")
    assert event.net_spread_bps == Decimal("17.000")


def published_step(levels: list[Level]) -> Decimal:
    """The step a VWAP over `levels` is published to: 4 decimals past the finest price; 0 for one level."""
    if sum(1 for _, size in levels if size > 0) < 2:
        return Decimal(0)
    places = max(-min(0, int(price.normalize().as_tuple().exponent)) for price, _ in levels)
    return Decimal(1).scaleb(-(places + 4))


def moved(levels: list[Level], by: Decimal) -> list[Level]:
    return [(price + by, size) for price, size in levels]


def smallest_published_size(asks: list[Level], bids: list[Level], step: Decimal) -> Decimal:
    """The least size published: what pays with every price one published step against us."""
    return largest_paying_size(moved(asks, published_step(asks)), moved(bids, -published_step(bids)), step)


def largest_paying_size(asks: list[Level], bids: list[Level], step: Decimal) -> Decimal:
    """Brute force oracle: bisect over multiples of `step` for the last size whose VWAPs still net > 5 bps.

    A size whose net profit is under 0.00000001 (the published money unit) is not worth publishing: 0.
    """

    def vwap(levels: list[Level], q: Decimal) -> Decimal:
        left, total = q, Decimal(0)
        for price, size in levels:
            take = min(size, left)
            total, left = total + take * price, left - take
        return total / q

    def net(q: Decimal) -> Decimal:
        return q * (vwap(bids, q) * Decimal("0.999") - vwap(asks, q) * Decimal("1.001"))

    def pays(units: int) -> bool:
        q = units * step
        return net(q) > Decimal("0.0005") * q * vwap(asks, q)

    depth = min(sum(s for _, s in asks), sum(s for _, s in bids))
    lo, hi = 0, int(depth / step)
    while lo < hi:  # the net spread only falls as size grows, so "pays" is monotone
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if pays(mid) else (lo, mid - 1)
    return lo * step if lo and net(lo * step) >= Decimal("1e-8") else Decimal(0)


def test_depth_aware_size_stops_inside_a_level_where_the_average_stops_paying() -> None:
    asks = [("100", "1"), ("101", "1"), ("102", "10")]
    bids = [("103", "0.5"), ("102.5", "1"), ("101", "5")]
    h = depth_harness()
    for q in (book_quote("binance", [("90", "1")], asks), book_quote("bybit", bids, [("110", "1")])):
        h.cache.update(q)
        h.detector.on_quote(q)
    # After 2 units the margin over 5 bps is 2.994; the next segment (buy 102, sell 101) loses
    # 101 × 0.999 − 102 × 1.001 − 0.0005 × 102 = −1.254 per unit, so it pays for 2.994 / 1.254 ≈ 2.3876 more.
    [event] = h.events
    levels = lambda pairs: [(Decimal(p), Decimal(s)) for p, s in pairs]  # noqa: E731
    exact = largest_paying_size(levels(asks), levels(bids), Decimal("1e-8"))
    # Sized with the asks 0.0001 higher and the bids 0.00001 lower (a published price step each):
    # the published VWAPs are rounded against us by less than that, so the size still pays at them.
    assert smallest_published_size(levels(asks), levels(bids), Decimal("1e-8")) == event.quantity < exact
    assert Decimal("4.38") < event.quantity < Decimal("4.39")
    # The size sits right at the bar: the exact figure clears 5 bps (the published one is truncated).
    assert event.net_profit / (event.quantity * event.buy_price) * 10_000 > 5


def test_depth_aware_size_respects_the_notional_cap_across_levels() -> None:
    h = Harness(min_net_profit_bps=Decimal(5), max_notional=Decimal(150))
    for q in (
        book_quote("binance", [("90", "1")], [("100", "1"), ("101", "1")]),
        book_quote("bybit", [("110", "5")], [("120", "1")]),
    ):
        h.cache.update(q)
        h.detector.on_quote(q)
    # 1 @ 100 = 100, then 50 / 101 = 0.49504950… more before the buy notional reaches 150 — sized
    # with the asks one published price step (0.0001) higher, so that the published (rounded up)
    # VWAP × quantity stays within the cap: (150 − 100.0001) / 101.0001 = 0.49504802…
    [event] = h.events
    assert event.quantity == Decimal("1.49504802")
    assert event.quantity * event.buy_price <= 150


depth_levels = st.lists(
    st.tuples(st.decimals(min_value=Decimal(1), max_value=Decimal(3), places=1), sizes),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(
    ask_steps=depth_levels, bid_steps=depth_levels, base=st.decimals(min_value=100, max_value=1000, places=2)
)
def test_depth_aware_size_is_the_largest_that_still_pays(
    ask_steps: list[tuple[Decimal, Decimal]], bid_steps: list[tuple[Decimal, Decimal]], base: Decimal
) -> None:
    # Asks rise from `base`, bids fall from just above it: some sizes pay, larger ones may not.
    asks, price = [], base
    for gap, size in ask_steps:
        asks.append((price, size))
        price += gap
    bids, price = [], base * Decimal("1.01")
    for gap, size in bid_steps:
        bids.append((price, size))
        price -= gap
    h = depth_harness()
    for q in (
        Quote(
            "binance",
            "BTC-USDT",
            base / 2,
            Decimal(1),
            asks[0][0],
            asks[0][1],
            None,
            0,
            1,
            ((base / 2, Decimal(1)),),
            tuple(asks),
        ),
        Quote(
            "bybit",
            "BTC-USDT",
            bids[0][0],
            bids[0][1],
            price * 3,
            Decimal(1),
            None,
            0,
            1,
            tuple(bids),
            ((price * 3, Decimal(1)),),
        ),
    ):
        h.cache.update(q)
        h.detector.on_quote(q)
    expected = largest_paying_size(asks, bids, Decimal("1e-8"))
    if expected == 0:
        assert h.events == []
    else:
        # The published VWAPs are rounded against us (buy up, sell down), which can cost some size.
        lowest = smallest_published_size(asks, bids, Decimal("1e-8"))
        if not h.events:
            assert lowest == 0
        else:
            [event] = h.events
            assert lowest <= event.quantity <= expected


# A bid this far above the break-even bid ask × (1 + 0.001 + 0.0005) / (1 − 0.001) clears 5 bps net.
near_break_even = st.one_of(
    st.decimals(min_value=Decimal("-1e-9"), max_value=Decimal("1e-9"), places=15),
    st.decimals(min_value=Decimal("-1e-4"), max_value=Decimal("1e-4"), places=8),
)


@settings(max_examples=300, deadline=None)
@given(
    ask=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100_000), places=2),
    offset=near_break_even,
    ask_qty=sizes,
    bid_qty=sizes,
)
def test_a_top_of_book_pair_at_the_edge_of_paying_is_published_exactly_when_it_pays(
    ask: Decimal, offset: Decimal, ask_qty: Decimal, bid_qty: Decimal
) -> None:
    bid = (ask * Decimal("1.0015") / Decimal("0.999") * (1 + offset)).quantize(Decimal("1e-12"))
    h = Harness(min_net_profit_bps=Decimal(5), max_notional=Decimal(10**12))  # the oracle's terms, no cap
    h.quote("binance", str(ask / 2), "1", str(ask), str(ask_qty))
    h.quote("bybit", str(bid), str(bid_qty), str(bid * 2), "1")
    expected = largest_paying_size([(ask, ask_qty)], [(bid, bid_qty)], Decimal("1e-8"))
    if expected == 0:
        assert h.events == []
    else:
        [event] = h.events
        assert expected - Decimal("1e-8") <= event.quantity <= expected


def test_an_opportunity_that_closed_when_its_quotes_went_stale_reopens_on_the_same_quotes() -> None:
    h = Harness()
    buy = Quote("binance", "BTC-USDT", Decimal(99), Decimal(1), Decimal(100), Decimal(1), None, 0, 1)
    sell = Quote("bybit", "BTC-USDT", Decimal(102), Decimal(1), Decimal(103), Decimal(1), None, 0, 1)
    for _ in range(2):  # the very same quote objects, delivered again (a replay, a resend)
        for q in (buy, sell):
            h.cache.update(q)
            h.detector.on_quote(q)
        h.clock.advance_ms(1_501)
        h.detector.sweep()
    assert [e.event for e in h.events] == ["opened", "closed", "opened", "closed"]
    first, _, again, _ = h.events
    assert again.id == first.id
    assert again.as_message() | {"detected_ns": 0, "expires_ns": 0} == first.as_message() | {
        "detected_ns": 0,
        "expires_ns": 0,
    }


def test_a_closed_opportunity_is_no_longer_open_when_its_event_is_delivered() -> None:
    h = Harness()
    open_at_delivery: list[int] = []

    def deliver(event: Opportunity) -> None:
        h.events.append(event)
        open_at_delivery.append(len(h.detector.open_opportunities()))

    h.detector.on_event = deliver
    h.quote("binance", "99", "1", "100", "1")
    h.quote("bybit", "102", "1", "103", "1")
    h.quote("bybit", "99", "1", "100", "1", seq=2)
    assert [e.event for e in h.events] == ["opened", "closed"]
    assert open_at_delivery == [1, 0]


@settings(max_examples=200, deadline=None)
@given(
    buy_age_ns=st.one_of(
        st.integers(0, 1_500_000_000), st.integers(0, 1_499_999).map(lambda ms: ms * 1_000 + 500)
    ),
    sell_age_ns=st.integers(0, 1_500_000_000),
)
def test_published_quote_ages_are_the_ages_in_milliseconds_to_three_places(
    buy_age_ns: int, sell_age_ns: int
) -> None:
    h = Harness()
    for venue, bid, ask, age_ns in (
        ("binance", "99", "100", buy_age_ns),
        ("bybit", "102", "103", sell_age_ns),
    ):
        q = Quote(venue, "BTC-USDT", Decimal(bid), Decimal(1), Decimal(ask), Decimal(1), None, 0, 1)
        h.cache.update(q, age_ns=age_ns)
        h.detector.on_quote(q)
    [event] = h.events
    assert event.buy_quote_age_ms == round(buy_age_ns / 1e6, 3)
    assert event.sell_quote_age_ms == round(sell_age_ns / 1e6, 3)
    assert event.expires_ns == h.clock.now_ns + 1_500 * MS - max(buy_age_ns, sell_age_ns)


def test_every_published_event_is_counted_and_a_quote_triggered_one_is_timed() -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {e: sample("smartroute_opportunities_total", event=e) for e in ("opened", "updated", "closed")}
    timed_before = sample("smartroute_detector_latency_seconds_count")
    h = Harness()
    h.quote("binance", "99", "1", "100", "1")
    h.quote("bybit", "102", "1", "103", "1")
    h.quote("okx", "102.5", "1", "103", "1")  # a second pair opens
    h.quote("bybit", "102.5", "1", "103", "1", seq=2)  # moves ~49 bps: updated
    h.clock.advance_ms(1_501)
    h.detector.sweep()  # both close, untimed: no quote triggered them
    after = {e: sample("smartroute_opportunities_total", event=e) for e in ("opened", "updated", "closed")}
    assert [e.event for e in h.events] == ["opened", "opened", "updated", "closed", "closed"]
    assert {e: after[e] - before[e] for e in after} == {"opened": 2, "updated": 1, "closed": 2}
    assert sample("smartroute_detector_latency_seconds_count") - timed_before == 3


def test_the_detector_settings_are_fixed_at_construction() -> None:
    h = Harness(min_net_profit_bps=Decimal(7))
    assert h.detector.min_net_profit_bps == Decimal(7)
    with pytest.raises(AttributeError):
        h.detector.min_net_profit_bps = Decimal(1)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("bid", "ask"),
    [("101", "100.5"), ("101", "101"), ("101", "0"), ("0", "0"), ("-5", "-1")],
    ids=["crossed", "locked", "ask-zero", "both-zero", "negative"],
)
def test_a_quote_that_cannot_be_true_is_never_paired_whatever_a_feed_sends(bid: str, ask: str) -> None:
    """Defence in depth: a crossed or non-positive quote fed straight to cache and detector opens nothing."""
    h = Harness()
    h.quote("binance", "99", "1", "100", "1")
    h.quote("bybit", bid, "1", ask, "1")
    h.quote("okx", bid, "1", ask, "1", symbol="ETH-USDT")
    h.quote("binance", "99", "1", "100", "1", symbol="ETH-USDT")

    assert h.events == []
    assert h.detector.open_opportunities() == []


def test_an_open_opportunity_closes_when_its_venue_sends_a_crossed_quote() -> None:
    h = Harness()
    h.quote("binance", "99", "1", "100", "1")
    h.quote("bybit", "101", "1", "102", "1")
    assert [e.event for e in h.events] == ["opened"]

    h.quote("bybit", "103", "1", "102", "1", seq=2)  # crossed: selling into a 103 bid would be a fiction

    assert [(e.event, e.sell_venue) for e in h.events] == [("opened", "bybit"), ("closed", "bybit")]
    assert h.detector.open_opportunities() == []


def test_published_figures_carry_a_stated_precision_rounded_against_the_taker() -> None:
    asks = [("100", "1"), ("101", "1"), ("102", "10")]
    bids = [("103", "0.5"), ("102.5", "1"), ("101", "5")]
    h = depth_harness()
    for q in (book_quote("binance", [("90", "1")], asks), book_quote("bybit", bids, [("110", "1")])):
        h.cache.update(q)
        h.detector.on_quote(q)
    [event] = h.events
    message = event.as_message()
    # The asks are quoted in whole units, the bids to 1 decimal: VWAPs get 4 more decimals than that,
    # money 8 decimals, bps 2, each rounded so that it is never better than the exact figure.
    quantity = Decimal(str(message["quantity"]))
    exact_buy = (100 + 101 + (quantity - 2) * 102) / quantity
    exact_sell = (Decimal("51.5") + Decimal("102.5") + (quantity - Decimal("1.5")) * 101) / quantity
    buy, sell = Decimal(str(message["buy_price"])), Decimal(str(message["sell_price"]))
    assert buy == exact_buy.quantize(Decimal("1e-4"), rounding="ROUND_CEILING")
    assert sell == exact_sell.quantize(Decimal("1e-5"), rounding="ROUND_FLOOR")
    assert (message["quantity"], message["buy_price"], message["sell_price"]) == (
        "4.38717447",
        "101.3162",
        "101.56984",
    )
    assert event.net_profit == Decimal("0.2226664775634012")  # exact inside
    assert message["net_profit"] == "0.22266647"  # 8 decimals, rounded down
    assert event.net_spread_bps == Decimal("5.009")
    assert (message["gross_spread_bps"], message["net_spread_bps"]) == ("25.03", "5")  # 2 decimals, down
