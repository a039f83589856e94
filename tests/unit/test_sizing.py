"""Sizing: the closed form for one-level books, the float bounds that rule pairs out, size steps."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.types import Level
from router.sizing import Bounds, Sized, quantity_step, size_opportunity, step_of

prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1_000_000), places=4)
sizes = st.one_of(
    st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(1_000), places=8),
    st.integers(min_value=1, max_value=1_000).map(Decimal),
)
fees = st.decimals(min_value=Decimal(0), max_value=Decimal(100), places=1)
thresholds = st.decimals(min_value=Decimal(0), max_value=Decimal(50), places=1)
# Relative distance of the bid from the break-even bid ask × (1 + f_buy + t) / (1 − f_sell):
# mostly within a hair of it, where a float shortcut would be tempted to guess.
offsets = st.one_of(
    st.decimals(min_value=Decimal("-1e-8"), max_value=Decimal("1e-8"), places=14),
    st.decimals(min_value=Decimal("-0.01"), max_value=Decimal("0.01"), places=6),
)


def break_even_bid(ask: Decimal, fee_buy: Decimal, fee_sell: Decimal, threshold: Decimal) -> Decimal:
    return ask * (1 + (fee_buy + threshold) / 10_000) / (1 - fee_sell / 10_000)


def walked(levels: tuple[Level, ...], worse: Decimal) -> tuple[Level, ...]:
    """The same book with an empty level behind it: sized by walking, level by level."""
    return (*levels, (worse, Decimal(0)))


@settings(max_examples=400, deadline=None)
@given(
    ask=prices,
    offset=offsets,
    ask_qty=sizes,
    bid_qty=sizes,
    fee_buy=fees,
    fee_sell=fees,
    threshold=thresholds,
    cap_share=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(2), places=4),
    step=st.sampled_from([Decimal("1e-8"), Decimal("1e-5"), Decimal("0.01"), Decimal(1)]),
)
def test_one_level_books_are_sized_exactly_as_the_walk_sizes_them(
    ask: Decimal,
    offset: Decimal,
    ask_qty: Decimal,
    bid_qty: Decimal,
    fee_buy: Decimal,
    fee_sell: Decimal,
    threshold: Decimal,
    cap_share: Decimal,
    step: Decimal,
) -> None:
    bid = (break_even_bid(ask, fee_buy, fee_sell, threshold) * (1 + offset)).quantize(Decimal("1e-10"))
    # The notional cap is a share of the depth's notional: it binds about half of the time.
    max_notional = max((min(ask_qty, bid_qty) * ask * cap_share).quantize(Decimal("0.001")), Decimal("0.001"))
    asks, bids = ((ask, ask_qty),), ((bid, bid_qty),)
    terms = (fee_buy, fee_sell, threshold, max_notional, step)
    top_of_book = size_opportunity(asks, bids, *terms)
    by_walk = size_opportunity(walked(asks, ask * 2), walked(bids, bid / 2), *terms)
    assert top_of_book == by_walk
    if top_of_book is not None:
        assert top_of_book.quantity <= min(ask_qty, bid_qty)


def test_a_top_of_book_pair_is_sized_to_the_smaller_side_within_the_notional_cap() -> None:
    sized = size_opportunity(
        ((Decimal("64000.00"), Decimal("0.5")),),
        ((Decimal("64200.00"), Decimal("0.3")),),
        Decimal(10),
        Decimal(10),
        Decimal(5),
        Decimal(10_000),
        Decimal("1e-8"),
    )
    # 10000 / 64000 = 0.15625 < min(0.5, 0.3): the cap sets the size; one level, so VWAP = price.
    assert sized == Sized(Decimal("0.15625"), Decimal("64000"), Decimal("64200"))


depth = st.lists(st.tuples(st.decimals(min_value=0, max_value=Decimal("0.02"), places=6), sizes), max_size=4)


@settings(max_examples=400, deadline=None)
@given(
    ask=prices,
    offset=offsets,
    ask_steps=depth,
    bid_steps=depth,
    fee_buy=fees,
    fee_sell=fees,
    threshold=thresholds,
)
def test_bounds_never_rule_out_a_pair_that_pays(
    ask: Decimal,
    offset: Decimal,
    ask_steps: list[tuple[Decimal, Decimal]],
    bid_steps: list[tuple[Decimal, Decimal]],
    fee_buy: Decimal,
    fee_sell: Decimal,
    threshold: Decimal,
) -> None:
    bid = (break_even_bid(ask, fee_buy, fee_sell, threshold) * (1 + offset)).quantize(Decimal("1e-10"))
    # Books worsen level by level (asks up, bids down) by relative gaps; an empty list is a top-of-book feed.
    asks = [(ask, Decimal(1))]
    for gap, size in ask_steps:
        asks.append((asks[-1][0] * (1 + gap), size))
    bids = [(bid, Decimal(1))]
    for gap, size in bid_steps:
        bids.append((bids[-1][0] * (1 - gap), size))
    ask_depth, bid_depth = (tuple(asks) if ask_steps else ()), (tuple(bids) if bid_steps else ())
    ruled_out = Bounds.of(fee_sell, threshold).proceeds(bid, bid_depth) < Bounds.of(fee_buy, threshold).cost(
        ask, ask_depth
    )
    sized = size_opportunity(asks, bids, fee_buy, fee_sell, threshold, Decimal(10**12), Decimal("1e-8"))
    if ruled_out:
        assert sized is None


def test_bounds_rule_out_a_pair_whose_spread_does_not_cover_the_fees() -> None:
    # 100.1 × (1 − 0.001) = 99.9999 per unit sold < 100 × (1 + 0.001 + 0.0005) = 100.15 per unit bought.
    bounds = Bounds.of(Decimal(10), Decimal(5))
    assert bounds.proceeds(Decimal("100.1"), ()) < bounds.cost(Decimal(100), ())
    # With depth, the best level of each side counts: a better ask deeper in a (misordered) book.
    deeper = ((Decimal(120), Decimal(1)), (Decimal(99), Decimal(1)))
    assert not bounds.proceeds(Decimal("100.1"), ()) < bounds.cost(Decimal(120), deeper)


@pytest.mark.parametrize(
    ("fee_bps", "price"),
    [
        (Decimal(10_000), Decimal(100)),  # 1 − f = 0: the order of the levels no longer holds
        (Decimal(10), Decimal("1e400")),  # beyond floats
        (Decimal(10), Decimal("1e-400")),  # below normal floats
        (Decimal(10), Decimal("NaN")),
    ],
)
def test_bounds_rule_nothing_out_where_floats_cannot_be_trusted(fee_bps: Decimal, price: Decimal) -> None:
    bounds = Bounds.of(fee_bps, Decimal(5))
    proceeds = bounds.proceeds(price, ((price, Decimal(1)),))
    cost = bounds.cost(price, ((price, Decimal(1)),))
    assert math.isnan(proceeds) and math.isnan(cost)
    assert not proceeds < Bounds.of(Decimal(10), Decimal(5)).cost(Decimal(1), ())


def test_bounds_rule_nothing_out_under_an_imprecise_decimal_context() -> None:
    with localcontext() as context:
        context.prec = 12
        bounds = Bounds.of(Decimal(10), Decimal(5))
    assert not bounds.proceeds(Decimal(1), ()) < bounds.cost(Decimal(1000), ())


@pytest.mark.parametrize(
    ("value", "step"),
    [
        ("1.250", "0.001"),
        ("12", "1"),
        ("1.2E+3", "1"),
        ("-0.5", "0.1"),
        ("0.000000001", "1E-9"),  # written 1E-9
        ("0.0000001230", "1E-10"),  # written 1.230E-7
        ("NaN", "1"),
    ],
)
def test_step_of_is_the_precision_a_quantity_is_written_to(value: str, step: str) -> None:
    assert step_of(Decimal(value)) == Decimal(step)
    with localcontext() as context:
        context.capitals = 0  # exponents written with a lower-case e
        assert step_of(Decimal(value)) == Decimal(step)


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_step_of_agrees_with_the_exponent_of_the_decimal(value: Decimal) -> None:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    assert step_of(value) == Decimal(1).scaleb(min(exponent, 0))


def test_quantity_step_is_the_finer_precision_and_never_coarser_than_eight_decimals() -> None:
    assert quantity_step(Decimal("0.5"), Decimal("0.15625")) == Decimal("1e-8")
    assert quantity_step(Decimal("1.0000000000"), Decimal(2)) == Decimal("1e-10")
    assert quantity_step(Decimal(3), Decimal("0.000000000001")) == Decimal("1e-12")
