"""Best-execution planner: strategies, exclusions, reject codes and exact arithmetic (hand and hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import orjson
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from connectors.errors import SmartrouteError
from connectors.types import Quote, decimal_text
from router.errors import RouterError
from router.routing import (
    EXCLUSION_REASONS,
    NoRoute,
    RoutePlan,
    RouteRequest,
    VenueView,
    plan_route,
    walk_book,
)

D = Decimal
SYMBOL = "BTC-USDT"
MAX_AGE_MS = 1_500.0


def quote(
    venue: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], *, depth: bool = True
) -> Quote:
    bid_levels = tuple((D(p), D(q)) for p, q in bids)
    ask_levels = tuple((D(p), D(q)) for p, q in asks)
    (bid, bid_qty), (ask, ask_qty) = bid_levels[0], ask_levels[0]
    if not depth:
        return Quote(venue, SYMBOL, bid, bid_qty, ask, ask_qty, None, 0, None)
    return Quote(venue, SYMBOL, bid, bid_qty, ask, ask_qty, None, 0, None, bid_levels, ask_levels)


def three_venues(
    latency: dict[str, float | None] | None = None,
) -> list[VenueView]:
    """binance 10 bps, okx 8 bps, bybit 10 bps, two levels a side each.

    Per-unit all-in of each level (buy: price × (1 + fee), sell: price × (1 − fee)):
      asks  binance 100.00 ×1.001  = 100.1      (1)   100.10 ×1.001  = 100.2001   (2)
            okx     100.01 ×1.0008 = 100.090008 (1)   100.08 ×1.0008 = 100.160064 (2)
            bybit   100.03 ×1.001  = 100.13003  (0.5) 100.05 ×1.001  = 100.15005  (3)
      bids  binance  99.99 ×0.999  =  99.89001  (1)    99.90 ×0.999  =  99.8001   (2)
            okx      99.98 ×0.9992 =  99.900016 (1)    99.92 ×0.9992 =  99.840064 (2)
            bybit    99.97 ×0.999  =  99.87003  (0.5)  99.95 ×0.999  =  99.85005  (3)
    """
    latency = latency or {}
    books = {
        "binance": (D(10), [("99.99", "1"), ("99.90", "2")], [("100.00", "1"), ("100.10", "2")]),
        "okx": (D(8), [("99.98", "1"), ("99.92", "2")], [("100.01", "1"), ("100.08", "2")]),
        "bybit": (D(10), [("99.97", "0.5"), ("99.95", "3")], [("100.03", "0.5"), ("100.05", "3")]),
    }
    return [
        VenueView(venue, quote(venue, bids, asks), 100.0, fee, latency.get(venue))
        for venue, (fee, bids, asks) in books.items()
    ]


def request(
    strategy: str = "best_price", side: str = "buy", quantity: str = "0.5", **options: object
) -> RouteRequest:
    values: dict[str, object] = {
        "symbol": SYMBOL,
        "side": side,
        "quantity": D(quantity),
        "limit_price": None,
        "max_slippage_bps": D(20),
        "strategy": strategy,
        "max_quote_age_ms": MAX_AGE_MS,
    }
    values.update(options)
    return RouteRequest(**values)  # type: ignore[arg-type]


def legs(plan: RoutePlan) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    return [(leg.venue, leg.quantity, leg.expected_price, leg.expected_fee) for leg in plan.legs]


def excluded(considered: object) -> dict[str, str | None]:
    assert isinstance(considered, tuple)
    return {entry.venue: entry.excluded for entry in considered}


# --- best_price -------------------------------------------------------------------------------


def test_best_price_buy_picks_the_cheapest_all_in_venue_not_the_cheapest_raw_ask() -> None:
    plan = plan_route(request(), three_venues())
    # binance has the lowest ask (100.00) but okx's 8 bps fee makes it cheaper all-in:
    #   okx 100.01 × 1.0008 = 100.090008 < binance 100.00 × 1.001 = 100.1 < bybit 100.13003
    # fee on the leg: 0.5 × 100.01 = 50.005 notional × 8 / 10⁴ = 0.040004
    assert legs(plan) == [("okx", D("0.5"), D("100.01"), D("0.040004"))]
    assert plan.expected_price == D("100.01")
    scores = {entry.venue: entry.score for entry in plan.considered}
    assert scores == {"binance": D("100.1"), "bybit": D("100.13003"), "okx": D("100.090008")}
    assert plan.reason == "best_price: okx all-in 100.090008 beats binance 100.1 (3 venues considered)"


def test_best_price_sell_picks_the_richest_all_in_venue_not_the_highest_raw_bid() -> None:
    plan = plan_route(request(side="sell"), three_venues())
    # binance bids highest (99.99) but nets 99.99 × 0.999 = 99.89001;
    # okx nets 99.98 × 0.9992 = 99.900016, the most. Fee: 49.99 × 8 / 10⁴ = 0.039992
    assert legs(plan) == [("okx", D("0.5"), D("99.98"), D("0.039992"))]
    assert plan.side == "sell"
    assert "okx all-in 99.900016 beats binance 99.89001" in plan.reason


def test_best_price_walks_several_levels_and_reports_the_vwap() -> None:
    plan = plan_route(request(quantity="2", max_slippage_bps=D(10)), three_venues())
    # binance: 1 @ 100.00 + 1 @ 100.10 = 200.10 → VWAP 100.05, all-in 100.05 × 1.001 = 100.15005
    # okx:     1 @ 100.01 + 1 @ 100.08 = 200.09 → VWAP 100.045, all-in × 1.0008 = 100.125036
    # bybit: 0.5 @ 100.03 + 1.5 @ 100.05 = 50.015 + 150.075 = 200.09 → 100.045, × 1.001 = 100.145045
    assert legs(plan) == [("okx", D(2), D("100.045"), D("0.160072"))]  # 200.09 × 0.0008
    scores = {entry.venue: entry.score for entry in plan.considered}
    assert scores == {"binance": D("100.15005"), "bybit": D("100.145045"), "okx": D("100.125036")}


def test_equal_scores_break_by_venue_id() -> None:
    views = [
        VenueView("okx", quote("okx", [("99", "1")], [("100", "1")]), 1.0, D(10)),
        VenueView("binance", quote("binance", [("99", "1")], [("100", "1")]), 1.0, D(10)),
    ]
    assert plan_route(request(), views).legs[0].venue == "binance"


# --- preferred --------------------------------------------------------------------------------


def test_preferred_bias_large_enough_flips_the_choice_to_the_preferred_venue() -> None:
    req = request("preferred", preferred_venues=("binance",), preferred_bias_bps=D(1))
    plan = plan_route(req, three_venues())
    # binance all-in 100.1 costs (100.1 − 100.090008) / 100.090008 × 10⁴ = 0.9983… bps more than okx:
    # within its 1 bps bias. Its score is 100.1 / (1 + 1/10⁴), so it wins exactly when the cost ≤ 1 bps.
    assert legs(plan) == [("binance", D("0.5"), D("100.00"), D("0.05"))]  # 50 × 10 / 10⁴
    scores = {entry.venue: entry.score for entry in plan.considered}
    assert scores["binance"] == D("100.1") / D("1.0001")
    assert scores["okx"] == D("100.090008")  # not preferred: unbiased
    assert plan.reason == (
        "preferred: preferred binance over okx: +1 bps (bias 1 bps); binance all-in 100.1, okx 100.090008 "
        "(3 venues considered)"
    )  # 0.9983… bps, rounded up: a cost is never shown smaller than it is


def test_preferred_bias_too_small_keeps_the_cheaper_venue_and_says_what_it_would_have_cost() -> None:
    req = request("preferred", preferred_venues=("binance",), preferred_bias_bps=D("0.5"))
    plan = plan_route(req, three_venues())
    assert plan.legs[0].venue == "okx"
    assert {entry.venue: entry.score for entry in plan.considered}["binance"] == D("100.1") / D("1.00005")
    assert plan.reason.startswith(
        "preferred: okx over preferred binance: the preference would cost +1 bps, "
        "more than its bias 0.5 bps; "
    )


def test_preferred_bias_on_the_sell_side_raises_the_preferred_venues_score() -> None:
    req = request("preferred", side="sell", preferred_venues=("binance",), preferred_bias_bps=D("1.1"))
    plan = plan_route(req, three_venues())
    # binance nets 99.89001, okx 99.900016: (99.900016 − 99.89001) / 99.900016 × 10⁴ = 1.0016… bps ≤ 1.1
    assert plan.legs[0].venue == "binance"
    assert {entry.venue: entry.score for entry in plan.considered}["binance"] == D("99.89001") / D("0.99989")
    assert "preferred binance over okx: +1.01 bps (bias 1.1 bps)" in plan.reason


@pytest.mark.parametrize(
    ("side", "bybit_price", "chosen", "cost"),
    [
        # binance buys at 100 × 1.001 = 100.1 all-in. bybit 102 × 1.001 = 102.102 = 100.1 × 1.02:
        # exactly the 200 bps bias, honoured.
        ("buy", "102", "bybit", "+200"),
        # 102.01 × 1.001 = 102.11201: (102.11201 − 100.1) / 100.1 = 201 bps, over the bias.
        ("buy", "102.01", "binance", "+201"),
        # binance sells at 99.9 × 0.999 = 99.8001 all-in. bybit 97.902 × 0.999 = 97.804098
        # = 99.8001 × 0.98: exactly 200 bps.
        ("sell", "97.902", "bybit", "+200"),
        # 97.89 × 0.999 = 97.79211: (99.8001 − 97.79211) / 99.8001 = 201.2012… bps, shown rounded up.
        ("sell", "97.89", "binance", "+201.21"),
    ],
)
def test_a_preference_is_honoured_up_to_its_bias_and_no_further(
    side: str, bybit_price: str, chosen: str, cost: str
) -> None:
    bybit = quote("bybit", [(bybit_price, "5")], [("200", "5")])
    if side == "buy":
        bybit = quote("bybit", [("1", "5")], [(bybit_price, "5")])
    views = [
        VenueView("binance", quote("binance", [("99.9", "5")], [("100", "5")]), 1.0, D(10)),
        VenueView("bybit", bybit, 1.0, D(10)),
    ]
    req = request(
        "preferred", side=side, quantity="1", preferred_venues=("bybit",), preferred_bias_bps=D(200)
    )
    plan = plan_route(req, views)
    assert plan.legs[0].venue == chosen
    assert excluded(plan.considered) == {"binance": None, "bybit": None}  # nothing slips on either book
    assert f"{cost} bps" in plan.reason


def test_best_price_ignores_preferred_venues() -> None:
    req = request("best_price", preferred_venues=("binance",), preferred_bias_bps=D(50))
    assert plan_route(req, three_venues()).legs[0].venue == "okx"


# --- split ------------------------------------------------------------------------------------


def test_split_across_two_venues_takes_levels_in_all_in_order() -> None:
    plan = plan_route(request("split", quantity="2", max_venues=3), three_venues())
    # okx L0 100.090008 (1) then binance L0 100.1 (1) fill 2 exactly.
    assert legs(plan) == [
        ("okx", D(1), D("100.01"), D("0.080008")),  # 100.01 × 8 / 10⁴
        ("binance", D(1), D("100.00"), D("0.1")),  # 100.00 × 10 / 10⁴
    ]
    assert plan.expected_price == D("100.005")  # (100.01 + 100.00) / 2
    assert excluded(plan.considered) == {"binance": None, "bybit": None, "okx": None}


def test_split_across_three_venues_with_exact_leg_vwaps() -> None:
    plan = plan_route(request("split", quantity="3", max_venues=3), three_venues())
    # Order: okx L0 (1), binance L0 (1), bybit L0 100.13003 (0.5), bybit L1 100.15005 (0.5 of 3);
    # okx L1 100.160064 would come after bybit L1, so bybit takes the last unit.
    # bybit leg: 0.5 × 100.03 + 0.5 × 100.05 = 50.015 + 50.025 = 100.04 over 1 → VWAP 100.04
    assert legs(plan) == [
        ("okx", D(1), D("100.01"), D("0.080008")),
        ("binance", D(1), D("100.00"), D("0.1")),
        ("bybit", D(1), D("100.04"), D("0.10004")),  # 100.04 × 10 / 10⁴
    ]
    assert plan.expected_price == D("300.05") / 3  # 100.01 + 100.00 + 100.04
    assert plan.reason.startswith("split: 1 on okx at 100.01, 1 on binance at 100, 1 on bybit at 100.04")


def test_split_max_venues_cap_skips_levels_of_other_venues() -> None:
    plan = plan_route(request("split", quantity="3", max_venues=2), three_venues())
    # okx L0 and binance L0 use the 2 venues; bybit's cheaper levels are then skipped and
    # okx L1 (100.08) takes the third unit: okx 100.01 + 100.08 = 200.09 / 2 = 100.045
    assert legs(plan) == [
        ("okx", D(2), D("100.045"), D("0.160072")),  # 200.09 × 8 / 10⁴
        ("binance", D(1), D("100.00"), D("0.1")),
    ]
    assert plan.expected_price == D("100.03")  # 300.09 / 3
    assert excluded(plan.considered)["bybit"] is None  # eligible, not used


def test_split_sell_side_mirrors() -> None:
    plan = plan_route(request("split", side="sell", quantity="2.5", max_venues=3), three_venues())
    # Richest first: okx 99.900016 (1), binance 99.89001 (1), bybit 99.87003 (0.5)
    assert legs(plan) == [
        ("okx", D(1), D("99.98"), D("0.079984")),  # 99.98 × 8 / 10⁴
        ("binance", D(1), D("99.99"), D("0.09999")),
        ("bybit", D("0.5"), D("99.97"), D("0.049985")),  # 49.985 × 10 / 10⁴
    ]
    assert plan.expected_price == D("99.982")  # (99.98 + 99.99 + 49.985) / 2.5 = 249.955 / 2.5


def test_split_pools_depth_a_single_venue_lacks() -> None:
    # No venue alone has 8 (binance 3, okx 3, bybit 3.5) but together they have 9.5.
    plan = plan_route(request("split", quantity="8", max_venues=3, max_slippage_bps=D(100)), three_venues())
    assert sum(leg.quantity for leg in plan.legs) == 8
    assert excluded(plan.considered) == {"binance": None, "bybit": None, "okx": None}
    with pytest.raises(NoRoute) as error:
        plan_route(request("best_price", quantity="8", max_slippage_bps=D(100)), three_venues())
    assert set(excluded(error.value.considered).values()) == {"insufficient_depth"}


def test_split_market_order_beyond_capped_depth_is_no_liquidity() -> None:
    with pytest.raises(NoRoute) as error:
        plan_route(request("split", quantity="5", max_venues=1), three_venues())
    # Capped at one venue: okx (first by all-in) offers 1 + 2 = 3 < 5.
    assert error.value.reject_code == "no_liquidity"
    assert str(error.value) == (
        "not enough depth to buy 5 BTC-USDT across at most 1 venue (only 3 available): "
        "binance eligible; bybit eligible; okx eligible"
    )


def test_split_leg_over_slippage_on_its_own_book_is_rejected_and_marks_that_venue() -> None:
    with pytest.raises(NoRoute) as error:
        plan_route(request("split", quantity="3", max_venues=3, max_slippage_bps=D("0.5")), three_venues())
    # All-in order: okx 1 @ 100.01, binance 1 @ 100.00, bybit 0.5 @ 100.03, then bybit 0.5 @ 100.05.
    # okx and binance take their own best level (0 bps); bybit's leg VWAP 100.04 is
    # (100.04 − 100.03) / 100.03 × 10⁴ = 0.9997… bps worse than bybit's best ask.
    assert error.value.reject_code == "slippage_exceeded"
    assert str(error.value) == (
        "splitting to buy 3 BTC-USDT slips bybit 1 bps on its own book, over the 0.5 bps limit: "
        "binance eligible; bybit slippage_exceeded; okx eligible"
    )
    assert excluded(error.value.considered) == {"binance": None, "bybit": "slippage_exceeded", "okx": None}
    plan = plan_route(request("split", quantity="3", max_venues=3, max_slippage_bps=D(1)), three_venues())
    assert legs(plan)[2] == ("bybit", D(1), D("100.04"), D("0.10004"))


def test_split_legs_are_not_judged_against_a_cheaper_venues_price() -> None:
    views = [
        VenueView("binance", quote("binance", [("99", "5")], [("100", "1")]), 1.0, D(10)),
        VenueView("bybit", quote("bybit", [("99", "5")], [("101", "5")]), 1.0, D(10)),  # 100 bps above
    ]
    plan = plan_route(request("split", quantity="2", max_venues=2, max_slippage_bps=D(25)), views)
    # Each leg takes its own book's best level: 0 bps of slippage, although bybit's ask is 100 bps higher.
    assert legs(plan) == [("binance", D(1), D(100), D("0.1")), ("bybit", D(1), D(101), D("0.101"))]


# --- fastest ----------------------------------------------------------------------------------


def test_fastest_picks_the_lowest_known_latency_and_says_unknown_ranks_last() -> None:
    views = three_venues({"binance": 5.0, "okx": 20.0, "bybit": None})
    plan = plan_route(request("fastest"), views)
    assert plan.legs[0].venue == "binance"
    assert "binance ack 5 ms is the lowest among 3 venues within slippage" in plan.reason
    assert "unknown latency ranked last (bybit)" in plan.reason


def test_fastest_skips_a_faster_venue_over_the_slippage_limit() -> None:
    views = three_venues({"binance": 5.0, "okx": 20.0, "bybit": 30.0})
    plan = plan_route(request("fastest", quantity="2", max_slippage_bps=D(2)), views)
    # On their own books: binance 100.05 vs 100.00 = 5 bps, okx 100.045 vs 100.01 = 3.4995 bps,
    # bybit 100.045 vs 100.03 = 1.4995 bps — only bybit is within 2 bps.
    assert plan.legs[0].venue == "bybit"
    assert excluded(plan.considered) == {
        "binance": "slippage_exceeded",
        "bybit": None,
        "okx": "slippage_exceeded",
    }


def test_fastest_ranks_unknown_latency_after_known_even_if_cheaper() -> None:
    views = three_venues({"bybit": 30.0})
    assert plan_route(request("fastest"), views).legs[0].venue == "bybit"


def test_fastest_with_no_known_latency_falls_back_to_all_in_price_and_says_so() -> None:
    plan = plan_route(request("fastest"), three_venues())
    assert plan.legs[0].venue == "okx"
    assert "no ack latency known for any of 3 venues within slippage" in plan.reason
    assert "okx has the best all-in 100.090008" in plan.reason


# --- limit orders (IOC) -----------------------------------------------------------------------


def test_limit_order_plans_the_partial_fill_available_within_the_limit() -> None:
    plan = plan_route(request(quantity="3", limit_price=D("100.01")), three_venues())
    # Within 100.01: binance 1 @ 100.00 (all-in 100.1), okx 1 @ 100.01 (100.090008); bybit none.
    assert legs(plan) == [("okx", D(1), D("100.01"), D("0.080008"))]
    assert excluded(plan.considered) == {"binance": None, "bybit": "limit_price", "okx": None}


def test_split_limit_order_takes_every_level_within_the_limit() -> None:
    plan = plan_route(request("split", quantity="10", limit_price=D("100.03"), max_venues=3), three_venues())
    # Within 100.03: okx 1, binance 1, bybit 0.5 → 2.5 of 10 (IOC: the rest is not planned).
    assert [(leg.venue, leg.quantity) for leg in plan.legs] == [
        ("okx", 1),
        ("binance", 1),
        ("bybit", D("0.5")),
    ]
    assert plan.expected_price == D("100.01")  # (100.01 + 100.00 + 50.015) / 2.5 = 250.025 / 2.5


def test_sell_limit_never_takes_bids_below_the_limit() -> None:
    plan = plan_route(request(side="sell", quantity="3", limit_price=D("99.98")), three_venues())
    # Bids at or above 99.98: binance 99.99 (1), okx 99.98 (1); okx nets more all-in.
    assert legs(plan) == [("okx", D(1), D("99.98"), D("0.079984"))]


def test_limit_order_with_no_level_within_the_limit_is_no_liquidity() -> None:
    with pytest.raises(NoRoute) as error:
        plan_route(request(limit_price=D("99.5")), three_venues())
    assert error.value.reject_code == "no_liquidity"
    assert set(excluded(error.value.considered).values()) == {"limit_price"}
    assert "at or better than 99.5" in str(error.value)


# --- exclusions -------------------------------------------------------------------------------

CHEAP = quote("kraken", [("98.00", "5")], [("99.00", "5")])  # far better than every other venue


@pytest.mark.parametrize(
    ("view", "options", "reason"),
    [
        (
            VenueView("kraken", CHEAP, 1.0, D(0)),
            {"allowed_venues": frozenset({"okx", "binance", "bybit"})},
            "not_allowed",
        ),
        (
            VenueView("kraken", CHEAP, 1.0, D(0)),
            {"excluded_venues": frozenset({"kraken"})},
            "excluded_by_preferences",
        ),
        (VenueView("kraken", None, None, D(0)), {}, "no_quote"),
        (VenueView("kraken", CHEAP, 1_500.1, D(0)), {}, "stale"),
        (VenueView("kraken", CHEAP, None, D(0)), {}, "stale"),
        (VenueView("kraken", CHEAP, 1.0, D(0), resyncing=True), {}, "resyncing"),
        (VenueView("kraken", quote("kraken", [("99.5", "5")], [("99.5", "5")]), 1.0, D(0)), {}, "crossed"),
    ],
)
@pytest.mark.parametrize("strategy", ["best_price", "preferred", "fastest", "split"])
def test_an_excluded_venue_is_never_chosen_and_says_why(
    view: VenueView, options: dict[str, object], reason: str, strategy: str
) -> None:
    extra = {"preferred_venues": ("kraken",), "preferred_bias_bps": D(100), "max_venues": 5}
    plan = plan_route(request(strategy, **extra, **options), [*three_venues({"kraken": 0.1}), view])
    assert "kraken" not in {leg.venue for leg in plan.legs}
    kraken = next(entry for entry in plan.considered if entry.venue == "kraken")
    assert (kraken.excluded, kraken.expected_price, kraken.score) == (reason, None, None)
    # Its price (99.00, 101 bps under okx's) is not the slippage reference: okx stays within 20 bps.
    assert f"1 {reason}" in plan.reason


def test_exclusion_reasons_follow_their_precedence() -> None:
    stale_crossed = quote("okx", [("100.5", "1")], [("100.5", "1")])
    views = [
        VenueView("binance", None, None, D(10), resyncing=True),  # not allowed beats no quote
        VenueView("bybit", None, None, D(10)),  # preferences beat no quote
        VenueView("okx", stale_crossed, 9_999.0, D(8), resyncing=True),  # stale beats resyncing, crossed
        VenueView("kraken", stale_crossed, 1.0, D(8), resyncing=True),  # resyncing beats crossed
    ]
    req = request(allowed_venues=frozenset({"bybit", "okx", "kraken"}), excluded_venues=frozenset({"bybit"}))
    with pytest.raises(NoRoute) as error:
        plan_route(req, views)
    assert excluded(error.value.considered) == {
        "binance": "not_allowed",
        "bybit": "excluded_by_preferences",
        "kraken": "resyncing",
        "okx": "stale",
    }


def test_considered_lists_every_venue_once_in_venue_id_order() -> None:
    views = [*reversed(three_venues()), VenueView("coinbase", None, None, D(5))]
    plan = plan_route(request(), views)
    assert [entry.venue for entry in plan.considered] == ["binance", "bybit", "coinbase", "okx"]
    assert [entry.fee_bps for entry in plan.considered] == [D(10), D(10), D(5), D(8)]
    assert [entry.quote_age_ms for entry in plan.considered] == [100.0, 100.0, None, 100.0]


def test_top_of_book_only_quote_acts_as_one_level() -> None:
    top = VenueView("kraken", quote("kraken", [("99", "1")], [("100", "0.7")], depth=False), 1.0, D(0))
    plan = plan_route(request(quantity="0.5"), [top])
    assert legs(plan) == [("kraken", D("0.5"), D(100), D(0))]
    with pytest.raises(NoRoute) as error:
        plan_route(request(quantity="1"), [top])
    # 0.7 shown, 1 wanted: a market order cannot be filled.
    assert excluded(error.value.considered) == {"kraken": "insufficient_depth"}
    assert error.value.considered[0].expected_price == D(100)  # what it alone offers: 0.7 @ 100
    assert "kraken insufficient_depth (only 0.7)" in str(error.value)


# --- reject codes -----------------------------------------------------------------------------


def test_no_fresh_book_anywhere_is_stale_prices() -> None:
    binance, _, bybit = three_venues()
    views = [
        VenueView("binance", binance.quote, 2_000.0, D(10)),
        VenueView("okx", None, None, D(8)),
        VenueView("bybit", bybit.quote, 1.0, D(10), resyncing=True),
    ]
    with pytest.raises(NoRoute) as error:
        plan_route(request(), views)
    assert error.value.reject_code == "stale_prices"
    assert isinstance(error.value, RouterError) and isinstance(error.value, SmartrouteError)
    assert str(error.value) == (
        "no fresh usable book to buy 0.5 BTC-USDT: binance stale; bybit resyncing; okx no_quote"
    )


def test_no_venue_at_all_is_stale_prices() -> None:
    with pytest.raises(NoRoute) as error:
        plan_route(request(), [])
    assert (error.value.reject_code, error.value.considered) == ("stale_prices", ())


def test_every_venue_over_the_slippage_limit_is_slippage_exceeded() -> None:
    with pytest.raises(NoRoute) as error:
        plan_route(request(quantity="2", max_slippage_bps=D(1)), three_venues())
    # VWAPs vs each venue's own best ask: binance 100.05 vs 100.00 → 5 bps, okx 100.045 vs 100.01
    # → 3.4995 bps, bybit 100.045 vs 100.03 → 1.4995 bps (shown rounded up to 2 decimals).
    assert error.value.reject_code == "slippage_exceeded"
    assert str(error.value) == (
        "every book that could buy 2 BTC-USDT is over the 1 bps slippage limit: "
        "binance slippage_exceeded (5 bps); bybit slippage_exceeded (1.5 bps); "
        "okx slippage_exceeded (3.5 bps)"
    )


def test_a_venue_quoting_far_above_the_best_is_not_slippage_exceeded_for_it() -> None:
    views = [
        VenueView("binance", quote("binance", [("99", "5")], [("100", "5")]), 1.0, D(10)),
        VenueView("bybit", quote("bybit", [("99", "5")], [("101", "5")]), 1.0, D(10)),  # 100 bps above
    ]
    plan = plan_route(
        request(quantity="1", max_slippage_bps=D(25), allowed_venues=frozenset({"bybit"})), views
    )
    # Only bybit may be used; it fills at its own best ask, so nothing slips.
    assert legs(plan) == [("bybit", D(1), D(101), D("0.101"))]
    plan = plan_route(request(quantity="1", max_slippage_bps=D(25)), views)
    assert excluded(plan.considered) == {"binance": None, "bybit": None}


def test_fillers_over_slippage_and_others_too_shallow_is_slippage_exceeded() -> None:
    with pytest.raises(NoRoute) as error:
        # 3.5: only bybit (0.5 + 3) can fill; its VWAP (50.015 + 300.15) / 3.5 = 100.0471… is 1.71 bps
        # over its own best ask 100.03.
        plan_route(request(quantity="3.5", max_slippage_bps=D(1)), three_venues())
    assert error.value.reject_code == "slippage_exceeded"
    assert excluded(error.value.considered) == {
        "binance": "insufficient_depth",
        "bybit": "slippage_exceeded",
        "okx": "insufficient_depth",
    }
    assert "bybit slippage_exceeded (1.72 bps)" in str(error.value)


def test_no_venue_deep_enough_is_no_liquidity() -> None:
    with pytest.raises(NoRoute) as error:
        plan_route(request(quantity="10"), three_venues())
    assert error.value.reject_code == "no_liquidity"
    assert "binance insufficient_depth (only 3)" in str(error.value)


def test_every_venue_disallowed_is_no_liquidity() -> None:
    with pytest.raises(NoRoute) as error:
        plan_route(request(allowed_venues=frozenset({"kraken"})), three_venues())
    assert error.value.reject_code == "no_liquidity"
    assert set(excluded(error.value.considered).values()) == {"not_allowed"}


def test_no_route_as_message_is_the_route_object_with_no_legs() -> None:
    with pytest.raises(NoRoute) as error:
        plan_route(request(quantity="10"), three_venues())
    message = error.value.as_message()
    assert message["legs"] == [] and message["strategy"] == "best_price"
    assert message["reason"] == str(error.value)


# --- messages and bad input -------------------------------------------------------------------


def test_as_message_writes_decimals_as_plain_strings() -> None:
    plan = plan_route(request("split", quantity="2", max_venues=3), three_venues())
    message = orjson.loads(orjson.dumps(plan.as_message()))
    assert message["strategy"] == "split"
    assert message["legs"] == [
        {"venue": "okx", "quantity": "1", "expected_price": "100.01"},
        {"venue": "binance", "quantity": "1", "expected_price": "100"},
    ]
    assert message["considered"][0] == {
        "venue": "binance",
        "expected_price": "100.05",  # binance alone for 2: (100.00 + 100.10) / 2
        "fee_bps": "10",
        "quote_age_ms": 100.0,
        "score": "100.15005",
        "excluded": None,
    }
    assert message["reason"] == plan.reason


def test_bad_input_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="quantity must be > 0"):
        request(quantity="0")
    with pytest.raises(ValueError, match="max_venues must be >= 1"):
        request(max_venues=0)
    with pytest.raises(ValueError, match="limit_price must be > 0"):
        request(limit_price=D("-1"))
    with pytest.raises(ValueError, match="taker_fee_bps"):
        VenueView("okx", None, None, D("NaN"))
    with pytest.raises(ValueError, match="more than once: okx"):
        plan_route(request(), [*three_venues(), VenueView("okx", None, None, D(8))])
    other = VenueView("kraken", Quote("kraken", "ETH-USDT", D(1), D(1), D(2), D(1), None, 0, None), 1.0, D(0))
    with pytest.raises(ValueError, match="quote is for ETH-USDT"):
        plan_route(request(), [other])


def test_every_exclusion_reason_is_a_documented_string() -> None:
    assert EXCLUSION_REASONS == (
        "not_allowed",
        "excluded_by_preferences",
        "no_quote",
        "stale",
        "resyncing",
        "crossed",
        "insufficient_depth",
        "limit_price",
        "slippage_exceeded",
        "insufficient_balance",
    )


# --- walk_book --------------------------------------------------------------------------------

ASKS = ((D("100"), D("1")), (D("101"), D("0")), (D("102"), D("2")))


def test_walk_book_takes_levels_best_first_and_skips_empty_ones() -> None:
    # 1 @ 100 + 0.5 @ 102 = 151
    assert walk_book(ASKS, D("1.5"), None, "buy") == (D("1.5"), D("151"))
    assert walk_book(ASKS, D("10"), None, "buy") == (D("3"), D("304"))


def test_walk_book_stops_at_the_limit_price() -> None:
    assert walk_book(ASKS, D("3"), D("101.5"), "buy") == (D("1"), D("100"))
    bids = ((D("99"), D("1")), (D("98"), D("1")))
    assert walk_book(bids, D("2"), D("98.5"), "sell") == (D("1"), D("99"))
    assert walk_book(bids, D("2"), D("99.5"), "sell") == (D("0"), D("0"))


def test_walk_book_refuses_a_negative_quantity() -> None:
    with pytest.raises(ValueError, match="quantity"):
        walk_book(ASKS, D("-1"), None, "buy")


# --- properties -------------------------------------------------------------------------------

TICK = D("0.01")
LOT = D("0.001")


def mostly(common: object, *rare: object) -> st.SearchStrategy[object]:
    """Draw `common` about three times in four, else one of `rare`."""
    return st.sampled_from([common, common, common, *rare] if rare else [common])


@st.composite
def venue_views(draw: st.DrawFn) -> list[VenueView]:
    """Up to 5 venues with sorted multi-level books near 100, random fees, ages, flags and latencies."""
    venue_ids = st.sampled_from(["binance", "bybit", "okx", "coinbase", "kraken"])
    names = draw(st.lists(venue_ids, unique=True, min_size=1))
    sizes = st.integers(0, 1_000).map(lambda n: n * LOT)
    steps = st.lists(st.integers(0, 8), min_size=1, max_size=4)
    views = []
    for name in names:
        mid = draw(st.integers(9_990, 10_010))
        asks: list[tuple[Decimal, Decimal]] = []
        price = mid + draw(st.sampled_from([1, 2, 3, 5, 1, -1]))  # -1: crossed with the bids
        for step in draw(steps):
            price += step + (1 if asks else 0)
            asks.append((price * TICK, draw(sizes)))
        bids: list[tuple[Decimal, Decimal]] = []
        price = mid
        for step in draw(steps):
            price -= step + (1 if bids else 0)
            bids.append((price * TICK, draw(sizes)))
        depth = draw(st.booleans())
        top = (bids[0][0], bids[0][1], asks[0][0], asks[0][1])
        quote_ = Quote(name, SYMBOL, *top, None, 0, None, tuple(bids) * depth, tuple(asks) * depth)
        view = VenueView(
            name,
            quote_,
            draw(st.sampled_from([0.0, 500.0, 1_500.0])),
            D(draw(st.integers(0, 30))),
            draw(st.sampled_from([None, 1.0, 5.0, 20.0])),
        )
        change = draw(mostly({}, {"quote": None}, {"quote_age_ms": 1_500.5}, {"resyncing": True}))
        assert isinstance(change, dict)
        views.append(replace(view, **change))
    return views


@st.composite
def route_requests(draw: st.DrawFn, names: list[str]) -> RouteRequest:
    subset = st.lists(st.sampled_from(names), unique=True, max_size=2) if names else st.just([])
    return RouteRequest(
        symbol=SYMBOL,
        side=draw(st.sampled_from(["buy", "sell"])),
        quantity=draw(st.integers(1, 2_500)) * LOT,
        limit_price=draw(st.one_of(st.none(), st.integers(9_980, 10_020).map(lambda n: n * TICK))),
        max_slippage_bps=D(draw(st.integers(0, 60))),
        strategy=draw(st.sampled_from(["best_price", "preferred", "fastest", "split"])),
        max_quote_age_ms=MAX_AGE_MS,
        allowed_venues=draw(
            st.one_of(st.none(), st.lists(st.sampled_from(names), min_size=1).map(frozenset))
        ),
        excluded_venues=frozenset(draw(st.one_of(st.just([]), subset))),
        preferred_venues=tuple(draw(subset)),
        preferred_bias_bps=D(draw(st.integers(0, 20))),
        max_venues=draw(st.integers(1, 5)),
    )


def _side_prices(view: VenueView, side: str) -> list[Decimal]:
    assert view.quote is not None
    levels = view.quote.ask_levels() if side == "buy" else view.quote.bid_levels()
    return [price for price, size in levels if size > 0]


def assert_sound(req: RouteRequest, views: list[VenueView]) -> None:
    """Plan `req` and check what must hold for any book: quantity, exclusions, levels, limits, choice."""
    try:
        plan = plan_route(req, views)
    except NoRoute as error:
        event(f"no route: {error.reject_code}")
        assert error.reject_code in {"stale_prices", "slippage_exceeded", "no_liquidity"}
        assert [entry.venue for entry in error.considered] == sorted(view.venue for view in views)
        return
    event(f"planned {req.strategy} with {len(plan.legs)} leg(s)")
    by_name = {view.venue: view for view in views}
    reasons = excluded(plan.considered)
    assert [entry.venue for entry in plan.considered] == sorted(by_name)
    assert set(reasons.values()) <= {None, *EXCLUSION_REASONS}
    filled = sum(leg.quantity for leg in plan.legs)
    assert 0 < filled <= req.quantity
    if req.limit_price is None:
        assert filled == req.quantity  # market orders are planned in full or not at all
    assert len({leg.venue for leg in plan.legs}) == len(plan.legs)
    assert len(plan.legs) <= (req.max_venues if req.strategy == "split" else 1)
    for leg in plan.legs:
        view = by_name[leg.venue]
        assert reasons[leg.venue] is None and leg.quantity > 0
        assert leg.venue not in req.excluded_venues
        assert req.allowed_venues is None or leg.venue in req.allowed_venues
        assert view.quote is not None and not view.quote.crossed and not view.resyncing
        assert view.quote_age_ms is not None and view.quote_age_ms <= MAX_AGE_MS
        prices = _side_prices(view, req.side)
        assert min(prices) <= leg.expected_price <= max(prices)
        if req.limit_price is not None:
            within = (
                leg.expected_price - req.limit_price
                if req.side == "buy"
                else req.limit_price - leg.expected_price
            )
            assert within <= 0
    if req.strategy in ("best_price", "preferred"):
        scores = [
            entry.score for entry in plan.considered if entry.excluded is None and entry.score is not None
        ]
        chosen = next(entry.score for entry in plan.considered if entry.venue == plan.legs[0].venue)
        assert chosen == (min(scores) if req.side == "buy" else max(scores))
    if req.strategy == "preferred":
        assert_bias_honoured_up_to_its_value(req, plan)


def assert_bias_honoured_up_to_its_value(req: RouteRequest, plan: RoutePlan) -> None:
    """A preferred venue wins exactly when its all-in price is at most the bias worse than the best other."""
    sign = 1 if req.side == "buy" else -1
    all_in = {
        entry.venue: entry.expected_price * (1 + sign * entry.fee_bps / 10_000)
        for entry in plan.considered
        if entry.excluded is None and entry.expected_price is not None
    }
    preferred = [venue for venue in all_in if venue in req.preferred_venues]
    others = [venue for venue in all_in if venue not in req.preferred_venues]
    if not preferred or not others:
        return
    best_of = min if req.side == "buy" else max
    best_preferred = best_of(all_in[venue] for venue in preferred)
    best_other = best_of(all_in[venue] for venue in others)
    cost_bps = sign * (best_preferred - best_other) / best_other * 10_000
    tolerance = D("1e-18")  # the scores are 28-digit quotients
    if plan.legs[0].venue in req.preferred_venues:
        assert cost_bps <= req.preferred_bias_bps + tolerance
    else:
        assert cost_bps > req.preferred_bias_bps - tolerance


@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_property_plans_respect_quantity_exclusions_levels_and_limits(data: st.DataObject) -> None:
    views = data.draw(venue_views())
    assert_sound(data.draw(route_requests([view.venue for view in views])), views)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_property_split_plans_respect_quantity_exclusions_levels_and_limits(data: st.DataObject) -> None:
    views = data.draw(venue_views())
    req = data.draw(route_requests([view.venue for view in views]))
    assert_sound(replace(req, strategy="split", max_venues=data.draw(st.integers(1, 3))), views)


@settings(max_examples=200, deadline=None)
@given(views=venue_views(), quantity=st.integers(1, 8_000).map(lambda n: n * LOT))
def test_property_split_costs_no_more_than_best_price_on_the_buy_side(
    views: list[VenueView], quantity: Decimal
) -> None:
    common = {"max_slippage_bps": D(10_000), "max_venues": max(len(views), 1)}
    try:
        best = plan_route(request("best_price", quantity=str(quantity), **common), views)
        split = plan_route(request("split", quantity=str(quantity), **common), views)
    except NoRoute:
        assume(False)
        return

    def cost(plan: RoutePlan) -> Decimal:
        return sum((leg.quantity * leg.expected_price + leg.expected_fee for leg in plan.legs), D(0))

    event(f"split used {len(split.legs)} venue(s)")
    # VWAP × quantity re-multiplies a 28-digit quotient: allow for that rounding only.
    assert cost(split) <= cost(best) + D("1e-15")


@pytest.mark.parametrize(("side", "rounding"), [("buy", "ROUND_CEILING"), ("sell", "ROUND_FLOOR")])
def test_published_prices_are_rounded_against_the_taker_to_four_decimals_past_the_books(
    side: str, rounding: str
) -> None:
    # 3.5 can only come from bybit (0.5 + 3 a side); its VWAP is a 28-digit quotient.
    plan = plan_route(request(side=side, quantity="3.5", max_slippage_bps=D(100)), three_venues())
    [leg] = plan.legs
    exact = (D("0.5") * D("100.03") + 3 * D("100.05")) / D("3.5")
    if side == "sell":
        exact = (D("0.5") * D("99.97") + 3 * D("99.95")) / D("3.5")
    assert leg.venue == "bybit" and leg.expected_price == exact  # exact inside
    message = plan.as_message()
    # bybit quotes 2 decimals: published to 6, up for a buy (never cheaper than true), down for a sell.
    published = decimal_text(exact.quantize(D("1e-6"), rounding=rounding))
    assert message["legs"] == [{"venue": "bybit", "quantity": "3.5", "expected_price": published}]
    [bybit] = [entry for entry in message["considered"] if entry["venue"] == "bybit"]  # type: ignore[attr-defined]
    score = exact * (1 + D(10) / 10_000 if side == "buy" else 1 - D(10) / 10_000)
    shown = decimal_text(score.quantize(D("1e-6"), rounding))
    assert (bybit["expected_price"], bybit["score"]) == (published, shown)
    assert f"bybit all-in {shown}" in plan.reason
