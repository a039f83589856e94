"""Order-book arithmetic for routing: walks, all-in prices, slippage, one venue's offer, pooled fills.

Pure Decimal functions over `(price, quantity)` levels given best first (asks
ascending for a buy, bids descending for a sell). A level with a non-positive
price or quantity carries no liquidity and is skipped. `router.routing` decides
with these; nothing here knows about requests, preferences or freshness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from connectors.types import BPS, Level, Side

_ZERO = Decimal(0)


def within_limit(price: Decimal, limit_price: Decimal | None, side: Side) -> bool:
    """Return True when `price` is at or better than the limit (always, for a market order)."""
    if limit_price is None:
        return True
    return price <= limit_price if side == "buy" else price >= limit_price


def is_usable(level: Level) -> bool:
    """Return True when the level has a positive price and a positive quantity."""
    price, size = level
    return price > 0 and size > 0


def first_usable_price(levels: Sequence[Level]) -> Decimal | None:
    """Return the price of the best level that carries liquidity, or None when there is none."""
    return next((level[0] for level in levels if is_usable(level)), None)


def walk_book(
    levels: Sequence[Level], quantity: Decimal, limit_price: Decimal | None, side: Side
) -> tuple[Decimal, Decimal]:
    """Return (filled quantity, notional) taking levels best-first up to `quantity`, never past the limit.

    The walk stops at the first level past the limit price: levels are best
    first, so every later one is worse.
    """
    if not quantity.is_finite() or quantity < 0:
        raise ValueError(f"quantity to walk must be a finite decimal >= 0, got {quantity}")
    filled = notional = _ZERO
    for price, size in levels:
        if filled >= quantity or not within_limit(price, limit_price, side):
            break
        if not is_usable((price, size)):
            continue
        take = min(size, quantity - filled)
        filled += take
        notional += take * price
    return filled, notional


def marginal_price(
    levels: Sequence[Level], quantity: Decimal, limit_price: Decimal | None, side: Side
) -> Decimal | None:
    """Return the price of the worst level a walk for `quantity` takes, None when nothing fills.

    An IOC order limited at this price takes exactly the levels the walk took.
    """
    marginal = None
    filled = _ZERO
    for price, size in levels:
        if filled >= quantity or not within_limit(price, limit_price, side):
            break
        if is_usable((price, size)):
            filled += min(size, quantity - filled)
            marginal = price
    return marginal


def all_in(price: Decimal, fee_bps: Decimal, side: Side) -> Decimal:
    """Return the per-unit price after the taker fee: paid on a buy, given up on a sell."""
    fee = fee_bps / BPS
    return price * (1 + fee) if side == "buy" else price * (1 - fee)


def biased(score: Decimal, bias_bps: Decimal, side: Side) -> Decimal:
    """Return a preferred venue's all-in price made `bias_bps` more attractive, as a ranking score.

    The bias is measured in bps of the price it competes with: a preferred buy
    scoring `p / (1 + b)` beats another venue's all-in `q` exactly when
    `p <= q × (1 + b)`, i.e. when preferring it costs at most `bias_bps` of `q`
    (`preference_cost_bps`); a sell, `p / (1 − b)`, when `p >= q × (1 − b)`.
    """
    bias = bias_bps / BPS
    return score / (1 + bias) if side == "buy" else score / (1 - bias)


def preference_cost_bps(preferred: Decimal, other: Decimal, side: Side) -> Decimal:
    """Return how much worse the preferred all-in price is than `other`'s, in bps of `other` (< 0: better)."""
    worse_by = preferred - other if side == "buy" else other - preferred
    return worse_by / other * BPS


def rank_key(score: Decimal, side: Side) -> Decimal:
    """Return a sort key where smaller is better: the price for a buy, its negation for a sell."""
    return score if side == "buy" else -score


def slippage_bps(vwap: Decimal, reference: Decimal, side: Side) -> Decimal:
    """Return how far `vwap` is worse than the reference price, in bps of the reference.

    The router's reference is always the best price of the very book the VWAP
    was walked on (`book_slippage_bps`), never another venue's.
    """
    worse_by = vwap - reference if side == "buy" else reference - vwap
    return worse_by / reference * BPS


def book_slippage_bps(levels: Sequence[Level], vwap: Decimal, side: Side) -> Decimal:
    """Return how far `vwap` is worse than the best usable price of `levels`, the book it was walked on."""
    top = first_usable_price(levels)
    if top is None:
        raise ValueError("a VWAP needs a usable level in its own book")
    return slippage_bps(vwap, top, side)


@dataclass(frozen=True, slots=True)
class VenueWalk:
    """What one venue's book alone offers for an order, and why it cannot take the order alone."""

    filled: Decimal
    notional: Decimal
    all_in: Decimal | None  # the VWAP with the taker fee in; None when nothing fills
    score: Decimal | None  # all_in, made more attractive by a preference bias; None when nothing fills
    slippage_bps: Decimal | None  # the VWAP against this book's own best price
    excluded: str | None  # insufficient_depth | limit_price | slippage_exceeded | None

    @property
    def vwap(self) -> Decimal | None:
        """Return the volume-weighted average raw price of the walk, None when nothing fills."""
        return self.notional / self.filled if self.filled else None


def walk_venue(
    levels: Sequence[Level],
    quantity: Decimal,
    limit_price: Decimal | None,
    side: Side,
    *,
    fee_bps: Decimal,
    bias_bps: Decimal,
    max_slippage_bps: Decimal,
    pooled: bool,
) -> VenueWalk:
    """Walk one venue's levels for the order; price the VWAP all-in and say why it cannot fill alone.

    A market order must fill entirely (`insufficient_depth`); a limit order needs
    one level at or better than its limit (`limit_price`); the VWAP must be within
    `max_slippage_bps` of this book's own best price. When `pooled` (split), depth
    and slippage are judged on the pooled legs instead, so only a venue offering
    nothing is excluded here.
    """
    filled, notional = walk_book(levels, quantity, limit_price, side)
    if not filled:
        has_depth = first_usable_price(levels) is not None
        reason = "limit_price" if limit_price is not None and has_depth else "insufficient_depth"
        return VenueWalk(filled, notional, None, None, None, reason)
    vwap = notional / filled
    price = all_in(vwap, fee_bps, side)
    slippage = book_slippage_bps(levels, vwap, side)
    excluded = None
    if not pooled:
        if limit_price is None and filled < quantity:
            excluded = "insufficient_depth"
        elif slippage > max_slippage_bps:
            excluded = "slippage_exceeded"
    return VenueWalk(filled, notional, price, biased(price, bias_bps, side), slippage, excluded)


@dataclass(frozen=True, slots=True)
class Book:
    """One venue's side of the book, as the split planner pools it."""

    venue: str
    levels: tuple[Level, ...]
    fee_bps: Decimal


@dataclass(frozen=True, slots=True)
class Take:
    """What a pooled fill takes from one venue: quantity, raw notional and the taker fee on it."""

    venue: str
    quantity: Decimal
    notional: Decimal
    fee: Decimal  # quote currency: notional × fee_bps / 10⁴

    @property
    def vwap(self) -> Decimal:
        """Return the volume-weighted average raw price of the levels taken."""
        return self.notional / self.quantity


def pool_fill(
    books: Sequence[Book], quantity: Decimal, limit_price: Decimal | None, side: Side, max_venues: int
) -> list[Take]:
    """Fill `quantity` from every book's levels in all-in price order, from at most `max_venues` venues.

    Ties rank by venue id, then by level order. Once `max_venues` venues are in
    use, levels of other venues are skipped. With linear fees and no venue cap
    this greedy fill is the cheapest possible (buy) or richest (sell). Takes come
    back in the order their venue was first used, best first.
    """
    if max_venues < 1:
        raise ValueError(f"max_venues must be >= 1, got {max_venues}")
    ranked = sorted(
        (rank_key(all_in(price, book.fee_bps, side), side), book.venue, index, price, size)
        for book in books
        for index, (price, size) in enumerate(book.levels)
        if is_usable((price, size)) and within_limit(price, limit_price, side)
    )
    used: dict[str, tuple[Decimal, Decimal]] = {}
    remaining = quantity
    for _key, venue, _index, price, size in ranked:
        if remaining <= 0:
            break
        if venue not in used and len(used) >= max_venues:
            continue
        take = min(size, remaining)
        taken, notional = used.get(venue, (_ZERO, _ZERO))
        used[venue] = (taken + take, notional + take * price)
        remaining -= take
    fees = {book.venue: book.fee_bps for book in books}
    return [
        Take(venue, taken, notional, notional * fees[venue] / BPS)
        for venue, (taken, notional) in used.items()
    ]
