"""The residual of an arbitrage is decided from explicit inputs alone: no router, no cache, no executor."""

from __future__ import annotations

from decimal import Decimal as D

from connectors.types import Quote
from router.arbitrage import UNWIND_LEG, plan_residual, unwound
from router.execution import Fill, LegOutcome, OrderLeg
from router.request import ArbitrageRequest

REQUEST = ArbitrageRequest(
    request_id="arb-1", user_id="u", symbol="BTC-USDT", quantity=D(1), buy_venue="binance", sell_venue="bybit"
)


def outcome(leg: int, venue: str, side: str, filled: str) -> LegOutcome:
    order = OrderLeg("arb-1", leg, venue, "BTC-USDT", "buy" if side == "buy" else "sell", D(1), D(100))
    fill = Fill(venue, order.side, D(100), D(filled), D(0), "USDT", order.client_order_id, "v", 1)
    return LegOutcome(order, (fill,) if D(filled) else ())


def quote(venue: str) -> Quote:
    return Quote(venue, "BTC-USDT", D(99), D(5), D(101), D(5), None, 0, 1)


def test_hedged_legs_leave_no_residual() -> None:
    outcomes = [outcome(0, "binance", "buy", "1"), outcome(1, "bybit", "sell", "1")]
    assert plan_residual(REQUEST, outcomes, "unwind", {}, D(10)) is None


def test_a_long_residual_is_unwound_by_selling_on_the_buy_venue_within_the_slippage() -> None:
    outcomes = [outcome(0, "binance", "buy", "1"), outcome(1, "bybit", "sell", "0.4")]
    residual = plan_residual(REQUEST, outcomes, "unwind", {"binance": quote("binance")}, D(100))
    assert residual is not None and residual.unwind is not None
    leg = residual.unwind
    assert (leg.leg, leg.venue, leg.side, leg.quantity) == (UNWIND_LEG, "binance", "sell", D("0.6"))
    assert leg.limit_price == D("98.01")  # the bid 99 less 1%
    assert residual.report == {"quantity": "0.6", "venue": "binance", "exposure": "long"}
    half = LegOutcome(leg, outcome(2, "binance", "sell", "0.2").fills)
    assert unwound(residual.report, leg.quantity, half) == {
        "quantity": "0.6",
        "venue": "binance",
        "exposure": "long",
        "action": "partially_unwound",
        "unwound_quantity": "0.2",
        "remaining_quantity": "0.4",
    }


def test_a_short_residual_is_reported_or_left_unwound_without_a_fresh_quote() -> None:
    outcomes = [outcome(0, "binance", "buy", "0"), outcome(1, "bybit", "sell", "0.5")]
    reported = plan_residual(REQUEST, outcomes, "report", {"bybit": quote("bybit")}, D(10))
    assert reported is not None and reported.unwind is None
    assert reported.report["action"] == "left" and reported.report["exposure"] == "short"
    stale = plan_residual(REQUEST, outcomes, "unwind", {}, D(10))
    assert stale is not None and stale.unwind is None
    assert stale.report["action"] == "unwind_failed"
    assert stale.report["message"] == "no fresh bybit quote to unwind against"
