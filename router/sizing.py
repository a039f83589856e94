"""Depth-aware arbitrage sizing: the largest quantity that still pays after fees, walking both books.

Buying q on one book and selling q on the other, with fees as fractions,
the margin over the threshold t (as a fraction of the buy notional) is

    g(q) = Σ sell_price·(1 − f_sell)·dq − Σ buy_price·(1 + f_buy)·dq − t·Σ buy_price·dq

over the levels taken. g(0) = 0 and g is piecewise linear with a slope that
only falls as worse levels are reached, so the largest q with g(q) > 0 is
found by walking level pairs in order and solving one linear equation in the
segment where the slope turns negative. The buy notional cap (max_notional)
is applied the same way. Everything is exact Decimal arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

from connectors.types import Level

BPS = Decimal(10_000)
_ZERO = Decimal(0)
PRICE_PLACES = Decimal("1e-12")  # published VWAPs: far below any venue's tick


@dataclass(frozen=True, slots=True)
class Sized:
    """The opportunity's size and the VWAPs of executing it, as published (buy rounded up, sell down)."""

    quantity: Decimal
    buy_price: Decimal
    sell_price: Decimal


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
    notional after both taker fees, computed from the published (rounded) VWAPs.
    """
    f_buy, f_sell, t = fee_buy_bps / BPS, fee_sell_bps / BPS, min_net_bps / BPS
    quantity = _largest_profitable(asks, bids, f_buy, f_sell, t, max_notional)
    quantity = quantity.quantize(step, rounding=ROUND_DOWN) if quantity > 0 else _ZERO
    while quantity > 0:
        sized = _priced(asks, bids, quantity)
        net = quantity * (sized.sell_price * (1 - f_sell) - sized.buy_price * (1 + f_buy))
        if net > t * quantity * sized.buy_price:
            return sized
        quantity -= step  # the rounding of the VWAPs cost the last step its edge: take one step less
    return None


def _largest_profitable(
    asks: Sequence[Level], bids: Sequence[Level], f_buy: Decimal, f_sell: Decimal, t: Decimal, cap: Decimal
) -> Decimal:
    i = j = 0
    ask_left = asks[0][1] if asks else _ZERO
    bid_left = bids[0][1] if bids else _ZERO
    filled = margin = notional = _ZERO
    while i < len(asks) and j < len(bids):
        buy, sell = asks[i][0], bids[j][0]
        slope = sell * (1 - f_sell) - buy * (1 + f_buy) - t * buy  # d(margin)/dq in this segment
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


def _priced(asks: Sequence[Level], bids: Sequence[Level], quantity: Decimal) -> Sized:
    buy = _notional(asks, quantity) / quantity
    sell = _notional(bids, quantity) / quantity
    return Sized(
        quantity,
        buy.quantize(PRICE_PLACES, rounding=ROUND_CEILING),
        sell.quantize(PRICE_PLACES, rounding=ROUND_FLOOR),
    )


def _notional(levels: Sequence[Level], quantity: Decimal) -> Decimal:
    left, total = quantity, _ZERO
    for price, size in levels:
        take = min(size, left)
        total += take * price
        left -= take
        if left <= 0:
            break
    return total
