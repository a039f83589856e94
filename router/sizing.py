"""Depth-aware arbitrage sizing: the largest quantity that still pays after fees, walking both books.

Buying q on one book and selling q on the other, with fees as fractions,
the margin over the threshold t (as a fraction of the buy notional) is

    g(q) = Σ sell_price·(1 − f_sell)·dq − Σ buy_price·(1 + f_buy)·dq − t·Σ buy_price·dq

over the levels taken. g(0) = 0 and g is piecewise linear with a slope that
only falls as worse levels are reached, so the largest q with g(q) > 0 is
found by walking level pairs in order and solving one linear equation in the
segment where the slope turns negative. The buy notional cap (max_notional)
is applied the same way. Everything is exact Decimal arithmetic.

Two one-level books (top-of-book feeds, the common case) have a single
segment: `_size_one_level` takes it in closed form, with the very same
Decimal operations as the walk, so both give identical figures.

The VWAPs are published as `router.precision` says: buy rounded up, sell down,
to `PRICE_EXTRA_PLACES` decimals beyond the most decimals the book side's prices
show (one level's price is exact). A size is kept only when its net profit,
computed from those published VWAPs, clears the bar and is at least one
published money unit (`MONEY_STEP`). Rounding a VWAP moves it by less than one
price step, so a book side of several levels is sized with every price moved
one step against us: the size found then pays at the published VWAPs too, at
the cost of the sliver of size those steps take.

Most venue pairs are nowhere near paying; `Bounds` proves that with two
float comparisons, before any Decimal work, and never reaches a figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal, getcontext

import msgspec

from connectors.types import BPS, Level, Side
from router.precision import MONEY_STEP, price_step, quoted_places, round_price

_ZERO = Decimal(0)
MIN_STEP = Decimal("1e-8")

# Floats carry ~1e-16 relative error and a Decimal context of 20+ digits under 1e-19: a 1e-9
# relative slack dwarfs both, so what the bounds rule out, the exact walk rules out too.
_SLACK = 1e-9
_MIN_PRECISION = 20
_FLOAT_MIN, _FLOAT_MAX = 1e-300, 1e300  # normal floats, far from underflow and overflow
_STEPS = {places: Decimal(1).scaleb(places) for places in range(-40, 1)}  # 1E-40 … 1


class Sized(msgspec.Struct, frozen=True, gc=False):
    """The opportunity's size and the VWAPs of executing it, as published (`router.precision`).

    A msgspec Struct rather than a frozen dataclass: one is built per sized venue pair on the
    detector's hot path, for a tenth of the cost.
    """

    quantity: Decimal
    buy_price: Decimal
    sell_price: Decimal


class Terms(msgspec.Struct, frozen=True, gc=False):
    """One venue pair's fees and bar as the exact fractions the sizing works with.

    Build it once per pair with `Terms.of` and size with `size_with_terms`: the
    divisions are then not repeated for every quote.
    """

    pay_on_buy: Decimal  # 1 + f_buy
    keep_on_sell: Decimal  # 1 − f_sell
    t: Decimal  # the bar, min_net_bps / 10⁴
    max_notional: Decimal

    @classmethod
    def of(
        cls, fee_buy_bps: Decimal, fee_sell_bps: Decimal, min_net_bps: Decimal, max_notional: Decimal
    ) -> Terms:
        """Return the terms of buying at `fee_buy_bps`, selling at `fee_sell_bps`, netting > `min_net_bps`."""
        return cls(1 + fee_buy_bps / BPS, 1 - fee_sell_bps / BPS, min_net_bps / BPS, max_notional)


class Bounds(msgspec.Struct, frozen=True, gc=False):
    """One venue's float bounds on what a unit earns sold there, and costs bought there (a prefilter).

    With each venue's `Bounds.of(fee_bps, min_net_bps)`: when the seller's `proceeds(...)` is
    below the buyer's `cost(...)`, then `bid × (1 − f_sell) < ask × (1 + f_buy + t)` for every
    pair of levels, with room to spare for rounding, so every segment of the walk loses and
    `size_opportunity` returns None. A NaN bound compares false and rules nothing out: it is
    what absurd fees (a factor near or below zero), prices beyond the range of normal floats and
    a Decimal context under 20 digits get.
    """

    sell_factor: float  # at least 1 − f
    buy_factor: float  # at most 1 + f + t

    @classmethod
    def of(cls, fee_bps: Decimal, min_net_bps: Decimal) -> Bounds:
        """Return the bounds of a venue charging `fee_bps`, for pairs that must net > `min_net_bps`."""
        fee, bar = float(fee_bps) / 1e4, float(min_net_bps) / 1e4
        sell_factor = (1 - fee) + _SLACK * (1 + abs(fee))
        buy_factor = (1 + fee + bar) - _SLACK * (1 + abs(fee) + abs(bar))
        sane = abs(fee) + abs(bar) < 1e3 and sell_factor > 1e-6 and buy_factor > 1e-6
        if not sane or getcontext().prec < _MIN_PRECISION:
            return cls(math.nan, math.nan)
        return cls(sell_factor, buy_factor)

    def proceeds(self, bid: Decimal, depth: Sequence[Level]) -> float:
        """Return at least `price × (1 − f)` of every bid level: of `depth`, or of `bid` alone if empty."""
        high = max(_floats(depth)) if depth else float(bid)
        return (high if _FLOAT_MIN < high < _FLOAT_MAX else math.nan) * self.sell_factor

    def cost(self, ask: Decimal, depth: Sequence[Level]) -> float:
        """Return at most `price × (1 + f + t)` of every ask level: of `depth`, or of `ask` alone if empty."""
        low = min(_floats(depth)) if depth else float(ask)
        return (low if _FLOAT_MIN < low < _FLOAT_MAX else math.nan) * self.buy_factor


def _floats(levels: Sequence[Level]) -> list[float]:
    prices = [float(price) for price, _ in levels]
    return [math.nan] if any(map(math.isnan, prices)) else prices  # max/min would pass a NaN over


def quantity_step(ask_qty: Decimal, bid_qty: Decimal) -> Decimal:
    """Return the size step: the finer of the two books' quantity precisions, and at least 8 decimals.

    A venue showing "0.5" may well trade 0.15625, so the step is never coarser than 1e-8.
    """
    return min(step_of(ask_qty), step_of(bid_qty), MIN_STEP)


def step_of(value: Decimal) -> Decimal:
    """Return the precision `value` is written to: 0.001 for 1.250, 1 for 12 or 1.2E+3."""
    text = str(value)  # the exponent from the text: `as_tuple()` costs ten times as much
    if "E" in text or "e" in text:  # exponent notation (lower case if the context says so)
        exponent = value.as_tuple().exponent
        places = exponent if isinstance(exponent, int) and exponent < 0 else 0
    else:
        dot = text.find(".")
        places = dot + 1 - len(text) if dot >= 0 else 0
    step = _STEPS.get(places)
    return step if step is not None else Decimal(1).scaleb(places)


def size_opportunity(
    asks: Sequence[Level],
    bids: Sequence[Level],
    fee_buy_bps: Decimal,
    fee_sell_bps: Decimal,
    min_net_bps: Decimal,
    max_notional: Decimal,
    step: Decimal,
) -> Sized | None:
    """Return the largest profitable size (a multiple of `step`) and its VWAPs, or None.

    `asks` is the buy venue's ask side and `bids` the sell venue's bid side,
    both best first. The result nets strictly more than `min_net_bps` of its buy
    notional after both taker fees, computed from the published (rounded) VWAPs,
    and at least `MONEY_STEP`, so its net profit rounded down is still positive.
    """
    return size_with_terms(asks, bids, Terms.of(fee_buy_bps, fee_sell_bps, min_net_bps, max_notional), step)


def size_with_terms(
    asks: Sequence[Level], bids: Sequence[Level], terms: Terms, step: Decimal
) -> Sized | None:
    """Return what `size_opportunity` returns, for terms built once with `Terms.of`."""
    if len(asks) == 1 and len(bids) == 1:
        (ask, ask_qty), (bid, bid_qty) = asks[0], bids[0]
        if ask_qty > _ZERO and bid_qty > _ZERO and terms.max_notional > _ZERO:
            return _size_one_level(ask, ask_qty, bid, bid_qty, terms, step)
    return _size_walking(asks, bids, terms, step)


def _size_walking(asks: Sequence[Level], bids: Sequence[Level], terms: Terms, step: Decimal) -> Sized | None:
    ask_step, bid_step = _published_step(asks), _published_step(bids)
    quantity = _largest_profitable(_moved(asks, ask_step), _moved(bids, -bid_step), terms)
    quantity = quantity.quantize(step, rounding=ROUND_DOWN) if quantity > 0 else _ZERO
    while quantity > 0:
        sized = Sized(
            quantity, _vwap(asks, quantity, ask_step, "buy"), _vwap(bids, quantity, bid_step, "sell")
        )
        net = quantity * (sized.sell_price * terms.keep_on_sell - sized.buy_price * terms.pay_on_buy)
        if net > terms.t * quantity * sized.buy_price:
            return sized if net >= MONEY_STEP else None  # under one published money unit: not worth it
        quantity -= step  # the rounding of the VWAPs cost the last step its edge: take one step less
    return None


def _size_one_level(
    ask: Decimal, ask_qty: Decimal, bid: Decimal, bid_qty: Decimal, terms: Terms, step: Decimal
) -> Sized | None:
    """Size two one-level books with positive sizes and cap: the walk's single segment, op for op.

    (`x if x < y else y` is `min(y, x)`'s value without the cost of a builtin call.)
    """
    slope = bid * terms.keep_on_sell - ask * terms.pay_on_buy - terms.t * ask
    if slope <= _ZERO:
        return None  # the walk takes nothing from a segment that does not gain
    depth = bid_qty if bid_qty < ask_qty else ask_qty
    take = depth
    if take * ask > terms.max_notional:
        take = (terms.max_notional - _ZERO) / ask
        if not take < depth:
            return _size_walking(((ask, ask_qty),), ((bid, bid_qty),), terms, step)  # a rounding tie
    filled = _ZERO + take
    quantity = filled.quantize(step, ROUND_DOWN) if filled > _ZERO else _ZERO
    # quantity <= depth: each side takes its one level only, so the VWAPs are the level prices,
    # and the margin per unit is the same at every size: the walk's loop ends at its first step.
    while quantity > _ZERO:
        net = quantity * (bid * terms.keep_on_sell - ask * terms.pay_on_buy)
        if net > terms.t * quantity * ask:
            return Sized(quantity, ask, bid) if net >= MONEY_STEP else None
        quantity -= step
    return None


def _largest_profitable(asks: Sequence[Level], bids: Sequence[Level], terms: Terms) -> Decimal:
    keep_on_sell, pay_on_buy, t, cap = terms.keep_on_sell, terms.pay_on_buy, terms.t, terms.max_notional
    i = j = 0
    ask_left = asks[0][1] if asks else _ZERO
    bid_left = bids[0][1] if bids else _ZERO
    filled = margin = notional = _ZERO
    while i < len(asks) and j < len(bids):
        buy, sell = asks[i][0], bids[j][0]
        slope = sell * keep_on_sell - buy * pay_on_buy - t * buy  # d(margin)/dq in this segment
        take = min(ask_left, bid_left)
        if notional + take * buy > cap:
            take = (cap - notional) / buy
        if slope < 0:
            # The margin shrinks from here: stop where it reaches zero, if that comes first.
            take = min(take, margin / -slope)
        elif slope == 0 and margin == 0:
            take = _ZERO  # nothing earned so far and nothing to earn here: not profitable
        filled += take
        margin += slope * take
        notional += take * buy
        if take < min(ask_left, bid_left):
            break  # stopped inside this segment: by the margin or by the notional cap
        ask_left -= take
        bid_left -= take
        if ask_left == 0:
            i += 1
            ask_left = asks[i][1] if i < len(asks) else _ZERO
        if bid_left == 0:
            j += 1
            bid_left = bids[j][1] if j < len(bids) else _ZERO
    return filled


def _published_step(levels: Sequence[Level]) -> Decimal:
    """Return the step a VWAP over `levels` is published to; 0 when only one level has a size (exact)."""
    if sum(1 for _, size in levels if size > 0) < 2:
        return _ZERO
    return price_step(quoted_places(price for price, _ in levels))


def _moved(levels: Sequence[Level], by: Decimal) -> Sequence[Level]:
    return levels if not by else [(price + by, size) for price, size in levels]


def _vwap(levels: Sequence[Level], quantity: Decimal, step: Decimal, side: Side) -> Decimal:
    """Return the published VWAP of taking `quantity`: one level's price as it is, else rounded to `step`."""
    left, total = quantity, _ZERO
    taken: list[Decimal] = []
    for price, size in levels:
        take = min(size, left)
        if take <= 0:
            continue
        total += take * price
        taken.append(price)
        left -= take
        if left <= 0:
            break
    if len(taken) == 1 or not step:
        return taken[0] if len(taken) == 1 else total / quantity
    return round_price(total / quantity, step, side)
