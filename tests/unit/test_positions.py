"""Net positions from fills, their valuation, position and gross-exposure limits, average-cost PnL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from connectors.types import Quote
from router.cache import PriceCache
from router.execution import Fill
from router.positions import PositionBook, Price, fresh_mids, utc_day
from router.risk import PlannedLeg, RiskGate, RiskLimits, RiskRejected

DAY_NS = 86_400 * 1_000_000_000
DEC_7 = 1_796_601_600 * 1_000_000_000  # 2026-12-07 00:00:00 UTC


def fill(
    side: str,
    quantity: str,
    price: str,
    *,
    venue: str = "binance",
    fee: str = "0",
    fee_asset: str = "USDT",
    ts_ns: int = DEC_7 + 3_600 * 1_000_000_000,
) -> Fill:
    return Fill(venue, side, D(price), D(quantity), D(fee), fee_asset, "c", "v", ts_ns)  # type: ignore[arg-type]


def leg(side: str, quantity: str, price: str, venue: str = "binance", symbol: str = "BTC-USDT") -> PlannedLeg:
    return PlannedLeg(venue, symbol, side, D(quantity), D(price))  # type: ignore[arg-type]


def mids(**prices: str) -> dict[str, D]:
    return {asset: D(p) for asset, p in prices.items()}


def book_with(prices: dict[str, D] | None = None) -> PositionBook:
    known = prices if prices is not None else {}
    return PositionBook("USDT", known.get)


# --- positions --------------------------------------------------------------------------------


def test_a_fill_moves_the_base_the_quote_and_the_fee_asset_per_venue_and_in_total() -> None:
    book = book_with()
    book.apply("BTC-USDT", fill("buy", "0.5", "60000", fee="30", fee_asset="USDT"))
    book.apply("BTC-USDT", fill("sell", "0.2", "61000", venue="okx", fee="0.0001", fee_asset="BTC"))
    book.apply("ETH-BTC", fill("buy", "2", "0.05", venue="okx", fee="0.01", fee_asset="BNB"))

    # binance: BTC +0.5;  USDT -0.5 × 60000 - 30 fee = -30030
    # okx:     BTC -0.2 - 0.0001 fee - 2 × 0.05 (ETH-BTC quote leg) = -0.3001;  USDT +0.2 × 61000 = +12200
    #          ETH +2;  BNB -0.01
    assert book.positions() == {
        "BNB": {"okx": D("-0.01")},
        "BTC": {"binance": D("0.5"), "okx": D("-0.3001")},
        "ETH": {"okx": D(2)},
        "USDT": {"binance": D(-30030), "okx": D(12200)},
    }
    assert book.net("BTC") == D("0.1999")  # 0.5 - 0.3001
    assert book.net("USDT") == D(-17830)  # -30030 + 12200
    assert book.net("BTC", "okx") == D("-0.3001")


def test_assets_are_valued_at_the_median_fresh_mid_across_venues() -> None:
    cache = PriceCache(ttl_ms=10_000, max_quote_age_ms=1_000, clock_ns=lambda: 0)
    for venue, bid, ask in (("binance", "100", "102"), ("okx", "104", "106"), ("bybit", "90", "91")):
        cache.update(Quote(venue, "ETH-USDT", D(bid), D(1), D(ask), D(1), None, 0, 1))
    book = PositionBook("USDT", fresh_mids(cache, "USDT"))
    # mids 101, 105, 90.5 → median 101
    price = book.price("ETH")
    assert price is not None and (price.value, price.stale) == (D(101), False)
    assert book.price("USDT") is not None and book.price("USDT").value == 1  # type: ignore[union-attr]


def test_without_a_fresh_mid_the_last_known_price_is_used_and_flagged_stale() -> None:
    prices = mids(BTC="60000")
    book = book_with(prices)
    assert book.price("BTC") == book.price("BTC") and book.price("BTC").stale is False  # type: ignore[union-attr]
    prices.clear()  # the quotes went stale
    stale = book.price("BTC")
    assert stale is not None and (stale.value, stale.stale) == (D(60000), True)

    book.apply("ETH-USDT", fill("buy", "1", "3000"))  # the last ETH-USDT fill prices ETH
    eth = book.price("ETH")
    assert eth is not None and (eth.value, eth.stale) == (D(3000), True)
    assert book.price("DOGE") is None


def test_gross_exposure_nets_across_venues_and_leaves_out_the_valuation_currency() -> None:
    book = book_with(mids(BTC="60000", ETH="3000"))
    book.apply("BTC-USDT", fill("buy", "1", "59000"))
    book.apply("BTC-USDT", fill("sell", "0.25", "59000", venue="okx"))  # hedged across venues
    book.apply("ETH-USDT", fill("sell", "2", "3100"))
    # |0.75| × 60000 + |-2| × 3000 = 45000 + 6000; the USDT legs are cash
    assert book.gross_exposure() == (D(51000), [])


# --- position limits --------------------------------------------------------------------------


def gate(max_position: dict[str, str], gross: str = "1000000", **prices: str) -> RiskGate:
    limits = RiskLimits(D(10_000_000), 100, D(gross), {a: D(v) for a, v in max_position.items()})
    return RiskGate(limits, positions=book_with(mids(**prices)))


def test_at_the_position_limit_a_sell_passes_and_a_buy_past_it_is_rejected_naming_the_numbers() -> None:
    risk = gate({"BTC": "2"}, BTC="60000")
    risk.record_fill("BTC-USDT", fill("buy", "1.5", "60000"))
    risk.record_fill("BTC-USDT", fill("buy", "0.5", "60000", venue="okx"))  # total 2: at the limit

    risk.check([leg("sell", "0.1", "60000")], user_max_order_notional=None)
    risk.check([leg("sell", "3", "60000", venue="okx")], user_max_order_notional=None)  # 2 → -1: smaller
    with pytest.raises(RiskRejected) as caught:
        risk.check([leg("buy", "0.001", "60000", venue="bybit")], user_max_order_notional=None)

    assert caught.value.reject_code == "risk_limit" and caught.value.limit == "max_position.BTC"
    assert caught.value.message == (
        "buy 0.001 BTC-USDT would take the net BTC position from 2 to 2.001, past max_position.BTC 2"
    )


def test_a_position_above_its_limit_can_always_be_reduced() -> None:
    risk = gate({"BTC": "2"}, BTC="60000")
    risk.record_fill("BTC-USDT", fill("buy", "3", "60000"))  # filled before the limit was lowered
    risk.check([leg("sell", "0.5", "60000")], user_max_order_notional=None)  # 3 → 2.5: still above, smaller
    with pytest.raises(RiskRejected):
        risk.check([leg("buy", "0.5", "60000")], user_max_order_notional=None)


def test_a_sell_that_flips_a_position_past_the_limit_on_the_other_side_is_rejected() -> None:
    risk = gate({"BTC": "2"}, BTC="60000")
    risk.record_fill("BTC-USDT", fill("buy", "1", "60000"))

    risk.check([leg("sell", "3", "60000")], user_max_order_notional=None)  # 1 → -2: |-2| ≤ 2
    with pytest.raises(RiskRejected) as caught:
        risk.check([leg("sell", "3.5", "60000")], user_max_order_notional=None)  # 1 → -2.5
    assert "from 1 to -2.5, past max_position.BTC 2" in caught.value.message


def test_a_quote_asset_position_has_its_limit_too() -> None:
    risk = gate({"BTC": "0.5"}, BTC="60000", ETH="3000")
    # buying 20 ETH with BTC at 0.05 spends 1 BTC: the net BTC position would be -1
    with pytest.raises(RiskRejected) as caught:
        risk.check([leg("buy", "20", "0.05", symbol="ETH-BTC")], user_max_order_notional=None)
    assert caught.value.limit == "max_position.BTC"
    assert "from 0 to -1," in caught.value.message


def test_gross_exposure_limit_rejects_growth_and_passes_reduction() -> None:
    risk = gate({}, gross="100000", BTC="60000", ETH="3000")
    risk.record_fill("BTC-USDT", fill("buy", "1", "60000"))  # 60000
    risk.record_fill("ETH-USDT", fill("buy", "10", "3000"))  # 30000: gross 90000

    risk.check([leg("buy", "3", "3000", symbol="ETH-USDT")], user_max_order_notional=None)  # 99000
    with pytest.raises(RiskRejected) as caught:
        risk.check([leg("buy", "4", "3000", symbol="ETH-USDT")], user_max_order_notional=None)  # 102000
    assert caught.value.limit == "max_gross_exposure"
    assert caught.value.message == (
        "buy 4 ETH-USDT would take the gross exposure from 90000 to 102000 USDT, "
        "past max_gross_exposure 100000"
    )
    # an arbitrage moves no total position: it passes even though each venue's position grows
    risk.check(
        [leg("buy", "1", "59900", venue="okx"), leg("sell", "1", "60100", venue="bybit")],
        user_max_order_notional=None,
    )


def test_an_asset_with_no_price_at_all_cannot_grow() -> None:
    risk = gate({})  # no mids, no fills
    risk.check([leg("buy", "1", "60000")], user_max_order_notional=None)  # the order's own price values it
    with pytest.raises(RiskRejected) as caught:
        risk.check([leg("buy", "20", "0.05", symbol="ETH-BTC")], user_max_order_notional=None)
    assert "has no price in USDT" in caught.value.message


# --- realized PnL -----------------------------------------------------------------------------


def test_realized_pnl_follows_average_cost_across_venues_with_fees() -> None:
    book = book_with(mids(BNB="600"))
    day = utc_day(DEC_7)
    realized = [
        book.apply("BTC-USDT", fill("buy", "1", "100", fee="0.1")),
        book.apply("BTC-USDT", fill("buy", "1", "110", venue="okx", fee="0.11")),
        book.apply("BTC-USDT", fill("sell", "0.5", "120", venue="bybit", fee="0.001", fee_asset="BNB")),
        book.apply("BTC-USDT", fill("sell", "2", "90", fee="0.0001", fee_asset="BTC")),
    ]
    # 1. buy 1 @ 100: basis 100;                        fee 0.1 USDT            → -0.1
    # 2. buy 1 @ 110: 2 BTC, basis 210 (avg 105);        fee 0.11 USDT           → -0.11
    # 3. sell 0.5 @ 120: releases 210 × 0.5/2 = 52.5; proceeds 60 → +7.5;
    #    fee 0.001 BNB at mid 600 = 0.6 (BNB goes short 0.001 at 600, basis -0.6) → 7.5 - 0.6 = 6.9
    # 4. sell 2 @ 90 from long 1.5 (basis 157.5): closes 1.5 → 135 - 157.5 = -22.5,
    #    opens short 0.5 at 90 (basis -45); fee 0.0001 BTC at 90 = 0.009: it grows the short
    #    (basis -45.009), expense -0.009                                            → -22.509
    assert realized == [D("-0.1"), D("-0.11"), D("6.9"), D("-22.509")]
    assert book.realized_on(day) == D("-15.819")
    assert book.net("BTC") == D("-0.5001")

    # buying back the short at 80: 0.5001 BTC of basis -45.009 → -0.5001 × 80 + 45.009 = 5.001
    assert book.apply("BTC-USDT", fill("buy", "0.5001", "80")) == D("5.001")


def test_an_uneven_share_of_the_basis_is_rounded_and_the_rest_stays_in_the_basis() -> None:
    book = book_with()
    book.apply("BTC-USDT", fill("buy", "1", "100"))
    book.apply("BTC-USDT", fill("buy", "2", "101"))  # 3 BTC, basis 302
    first = book.apply("BTC-USDT", fill("sell", "1", "101"))
    # released 302 / 3 = 100.666666666666666667 (18 decimals, half-even) → 0.333333333333333333
    assert first == D("0.333333333333333333")
    # closing the rest releases exactly what is left: 302 - 100.666666666666666667 = 201.333333333333333333
    rest = book.apply("BTC-USDT", fill("sell", "2", "101"))
    assert rest == D("0.666666666666666667")
    assert first + rest == D(1)  # 3 × 101 - 302: nothing lost to rounding


def test_realized_pnl_is_booked_on_the_utc_day_of_the_fill() -> None:
    book = book_with()
    book.apply("BTC-USDT", fill("buy", "1", "100", ts_ns=DEC_7 - 1))  # 2026-12-06 23:59:59.999…
    book.apply("BTC-USDT", fill("sell", "1", "90", ts_ns=DEC_7 - 1))
    book.apply("BTC-USDT", fill("buy", "1", "100", ts_ns=DEC_7))
    book.apply("BTC-USDT", fill("sell", "1", "97", ts_ns=DEC_7 + DAY_NS - 1))
    assert utc_day(DEC_7) == dt.date(2026, 12, 7)
    assert book.realized_on(dt.date(2026, 12, 6)) == D(-10)
    assert book.realized_on(dt.date(2026, 12, 7)) == D(-3)
    assert book.realized_on(dt.date(2026, 12, 8)) == 0


def test_an_asset_without_its_own_pair_is_priced_through_a_cross_pair() -> None:
    cache = PriceCache(ttl_ms=10_000, max_quote_age_ms=1_000, clock_ns=lambda: 0)
    cache.update(Quote("binance", "BTC-USDT", D(59_990), D(1), D(60_010), D(1), None, 0, 1))  # mid 60000
    cache.update(Quote("coinbase", "BTC-USD", D(59_999), D(1), D(60_001), D(1), None, 0, 1))  # mid 60000
    book = PositionBook("USDT", fresh_mids(cache, "USDT"))
    usd = book.price("USD")
    assert usd is not None and (usd.value, usd.stale) == (D(1), False)  # 60000 / 60000

    cache.update(Quote("coinbase", "BTC-USD", D(64_999), D(1), D(65_001), D(1), None, 0, 1))  # mid 65000
    # 60000 / 65000 = 0.923076…, 34 significant digits, half-even
    assert book.price("USD") == Price(D("0.9230769230769230769230769230769231"), stale=False)
    # a BTC-USD order grows USD: priced, it passes the gross check
    risk = RiskGate(RiskLimits(D(10_000_000), 100, D(1_000_000)), positions=book)
    risk.check([leg("sell", "1", "65000", venue="coinbase", symbol="BTC-USD")], user_max_order_notional=None)


# --- orders in flight (held) ------------------------------------------------------------------


def test_orders_in_flight_never_pass_a_position_limit_together() -> None:
    risk = gate({"BTC": "2"}, BTC="60000")
    risk.check([leg("buy", "1.5", "60000")], user_max_order_notional=None, hold="r-1")  # 0 → 1.5
    with pytest.raises(RiskRejected) as caught:  # alone it fits; with r-1 in flight it does not
        risk.check([leg("buy", "1", "60000")], user_max_order_notional=None, hold="r-2")
    assert "from 1.5 to 2.5, past max_position.BTC 2" in caught.value.message
    risk.release("r-1")  # r-1 settled without a fill
    risk.check([leg("buy", "1", "60000")], user_max_order_notional=None, hold="r-2")


def test_a_sell_in_flight_makes_no_room_for_a_buy_until_it_filled() -> None:
    risk = gate({"BTC": "2"}, BTC="60000")
    risk.record_fill("BTC-USDT", fill("buy", "2", "60000"))  # at the limit
    risk.check([leg("sell", "1", "60000")], user_max_order_notional=None, hold="r-sell")
    with pytest.raises(RiskRejected):  # the sell may not fill: the position may stay at 2
        risk.check([leg("buy", "1", "60000")], user_max_order_notional=None, hold="r-buy")
    risk.record_fill("BTC-USDT", fill("sell", "1", "60000"))
    risk.release("r-sell")
    risk.check([leg("buy", "1", "60000")], user_max_order_notional=None, hold="r-buy")


def test_holds_released_in_any_order_leave_nothing_held() -> None:
    risk = gate({"BTC": "2"}, BTC="60000")
    holds = [("r-1", "buy", "0.7"), ("r-2", "sell", "0.3"), ("r-3", "buy", "0.6"), ("r-4", "sell", "0.25")]
    for hold, side, quantity in holds:
        risk.check([leg(side, quantity, "60000")], user_max_order_notional=None, hold=hold)
    with pytest.raises(RiskRejected) as caught:  # the buys in flight may all fill: 1.3 + 0.8 > 2
        risk.check([leg("buy", "0.8", "60000")], user_max_order_notional=None)
    assert "from 1.3 to 2.1" in caught.value.message
    risk.release("r-3")
    risk.check([leg("buy", "0.8", "60000")], user_max_order_notional=None, hold="r-3")  # 0.7 + 0.8
    for hold in ("r-2", "r-1", "r-4", "r-3", "r-1"):  # a second release is a no-op
        risk.release(hold)
    risk.check([leg("buy", "2", "60000")], user_max_order_notional=None)  # nothing held: 0 → 2 fits


def test_orders_in_flight_count_in_the_gross_exposure() -> None:
    risk = gate({}, gross="100000", BTC="60000", ETH="3000")
    risk.check([leg("buy", "1", "60000")], user_max_order_notional=None, hold="r-btc")  # 60000 in flight
    with pytest.raises(RiskRejected) as caught:
        risk.check([leg("buy", "14", "3000", symbol="ETH-USDT")], user_max_order_notional=None, hold="r-eth")
    assert caught.value.limit == "max_gross_exposure" and "from 60000 to 102000" in caught.value.message
