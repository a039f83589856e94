"""An arbitrage's result and its residual's attempts are decided from explicit inputs alone.

No router, no cache, no executor: `router.residuals` and `router.arbitrage.settle_arbitrage`.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from connectors.types import Quote
from router.arbitrage import ArbitrageOutcome, settle_arbitrage
from router.execution import Fill, LegOutcome, OrderLeg
from router.ledger import ResidualRecord
from router.residuals import (
    FIRST_RESIDUAL_LEG,
    ResidualSettings,
    best_other_venue,
    next_attempt,
    residual_of,
    residual_report,
)

FEES = {"binance": D(10), "bybit": D(10), "okx": D(8)}
SETTINGS = ResidualSettings("unwind", max_slippage_bps=D(25), step_bps=D(10), timeout_ms=5_000)


def outcome(leg: int, venue: str, side: str, filled: str) -> LegOutcome:
    order = OrderLeg("arb-1", leg, venue, "BTC-USDT", "buy" if side == "buy" else "sell", D(1), D(100))
    fill = Fill(venue, order.side, D(100), D(filled), D(0), "USDT", order.client_order_id, "v", 1)
    return LegOutcome(order, (fill,) if D(filled) else ())


def quote(venue: str, bid: str = "99", ask: str = "101") -> Quote:
    return Quote(venue, "BTC-USDT", D(bid), D(5), D(ask), D(5), None, 0, 1)


def long_residual(**changes: object) -> ResidualRecord:
    buy, sell = outcome(0, "binance", "buy", "1"), outcome(1, "bybit", "sell", "0.4")
    found = residual_of("arb-1", "BTC-USDT", buy, sell, "unwind", 7)
    assert found is not None
    return replace(found, **changes)  # type: ignore[arg-type]


def test_hedged_legs_leave_no_residual() -> None:
    buy, sell = outcome(0, "binance", "buy", "1"), outcome(1, "bybit", "sell", "1")
    assert residual_of("arb-1", "BTC-USDT", buy, sell, "unwind", 7) is None


def test_unequal_legs_leave_a_residual_on_the_over_filled_venue_to_flatten() -> None:
    assert long_residual() == ResidualRecord(
        "arb-1", "binance", "BTC-USDT", "sell", D("0.6"), D("0.6"), 7, 0, "open", 7
    )
    buy, sell = outcome(0, "binance", "buy", "0"), outcome(1, "bybit", "sell", "0.5")
    short = residual_of("arb-1", "BTC-USDT", buy, sell, "report", 7)
    assert short is not None and (short.venue, short.side, short.state) == ("bybit", "buy", "left")


def test_the_widening_steps_go_from_zero_up_to_the_maximum() -> None:
    assert SETTINGS.widening() == (D(0), D(10), D(20), D(25))
    assert ResidualSettings(max_slippage_bps=D(0)).widening() == (D(0),)


def test_attempts_widen_the_limit_on_the_residual_venue_then_go_to_the_best_other_venue() -> None:
    quotes = {
        "binance": quote("binance"),
        "bybit": quote("bybit", bid="98.9"),
        "okx": quote("okx", bid="98.9"),
    }
    limits = []
    for attempts in range(5):
        leg = next_attempt(long_residual(attempts=attempts), 2 + attempts, quotes, FEES, SETTINGS)
        assert leg is not None and (leg.side, leg.quantity, leg.leg) == ("sell", D("0.6"), 2 + attempts)
        limits.append((leg.venue, leg.limit_price))
    # Bid 99 on binance less 0, 10, 20, 25 bps; then okx (98.9 less its 8 bps fee beats bybit's 10 bps)
    # at the widest allowance: 98.9 × (1 − 0.0025) = 98.65275.
    assert limits == [
        ("binance", D("99")),
        ("binance", D("98.901")),
        ("binance", D("98.802")),
        ("binance", D("98.75250")),
        ("okx", D("98.652750")),
    ]
    # The next round starts again on the residual's venue, from the fresh quote.
    again = next_attempt(long_residual(attempts=5), 7, quotes, FEES, SETTINGS)
    assert again is not None and (again.venue, again.limit_price) == ("binance", D("99"))


def test_a_short_residual_buys_at_the_ask_and_without_its_venue_quote_goes_elsewhere() -> None:
    short = long_residual(venue="bybit", side="buy")
    leg = next_attempt(short, FIRST_RESIDUAL_LEG, {"bybit": quote("bybit", ask="101")}, FEES, SETTINGS)
    assert leg is not None and (leg.venue, leg.side, leg.limit_price) == ("bybit", "buy", D("101"))
    elsewhere = next_attempt(short, 2, {"okx": quote("okx", ask="101.5")}, FEES, SETTINGS)
    assert elsewhere is not None and elsewhere.venue == "okx"
    assert elsewhere.limit_price == D("101.5")  # the first attempt's allowance: 0 bps
    later = next_attempt(replace(short, attempts=2), 4, {"okx": quote("okx", ask="101.5")}, FEES, SETTINGS)
    assert later is not None and later.limit_price == D("101.5") * (1 + D(20) / D(10_000))
    assert next_attempt(short, 2, {}, FEES, SETTINGS) is None
    assert best_other_venue(short, {"bybit": quote("bybit")}, FEES) is None


@pytest.mark.parametrize(
    ("bought", "sold", "status", "hedged"),
    [
        ("1", "1", "filled", "1"),
        ("1", "0.4", "partially_filled", "0.4"),
        ("1", "0", "failed", "0"),  # one leg filled: nothing hedged, never "filled"
        ("0.7", "0.7", "partially_filled", "0.7"),
    ],
)
def test_an_arbitrage_is_filled_only_when_both_legs_filled_the_quantity(
    bought: str, sold: str, status: str, hedged: str
) -> None:
    buy, sell = outcome(0, "binance", "buy", bought), outcome(1, "bybit", "sell", sold)
    done = ArbitrageOutcome("arb-1", "u", "BTC-USDT", D(1), buy, sell)
    result = settle_arbitrage(done, None, mode="paper", received_ns=1, completed_ns=2).as_message()
    assert (result["status"], result["filled_quantity"]) == (status, hedged)


def test_the_report_says_what_was_unhedged_what_was_done_and_what_remains() -> None:
    working = long_residual(remaining=D("0.2"), attempts=2)
    failed = LegOutcome(outcome(3, "binance", "sell", "0").leg, (), "no binance liquidity within limit 98.9")
    report = residual_report(working, [outcome(2, "binance", "sell", "0.4"), failed], SETTINGS)
    assert report == {
        "quantity": "0.6",
        "venue": "binance",
        "exposure": "long",
        "side": "sell",
        "state": "working",
        "action": "partially_unwound",
        "attempts": 2,
        "unwound_quantity": "0.4",
        "remaining_quantity": "0.2",
        "message": "0.2 BTC-USDT still unhedged on binance; the router keeps working it (IOC, limit widened "
        "up to 25 bps, then the best other venue) and halts trading if it is not flat 5000 ms after it "
        "began; last attempt: no binance liquidity within limit 98.9",
    }
    left = residual_report(long_residual(state="left"), [], SETTINGS)
    assert (left["state"], left["action"], left["remaining_quantity"]) == ("left", "left", "0.6")
    flat = residual_report(long_residual(remaining=D(0), state="flat", attempts=1), [], SETTINGS)
    assert (flat["state"], flat["action"], flat["unwound_quantity"]) == ("flat", "unwound", "0.6")
