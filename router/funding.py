"""Funding: what an order leg needs from a venue's balances, and how much of an order a venue can fund.

Pure Decimal functions. A leg is an IOC order limited at `L`, so it never costs
more than its limit:

- a buy of `q` needs `L × q × (1 + f / 10⁴)` of the quote asset (`f` = taker fee bps);
- a sell of `q` needs `q` of the base asset (its fee comes out of the proceeds).

`L` is the leg's IOC limit as `router.execution.leg_limit` sets it: the worst
level the leg takes, widened by the slippage allowance, never past the user's
limit. A venue's *fundable quantity* is the most of its book (walked best first)
whose leg the available balance pays for, rounded down onto the book's size
step (the most decimals among the quantities involved), so a sized-down order is
still a multiple of the lot its venues quote.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from connectors.types import BPS, Level, Side, decimal_text
from router.book_walk import is_usable, marginal_price, walk_book, within_limit
from router.precision import money_up, quoted_places

_ZERO = Decimal(0)


def symbol_assets(symbol: str) -> tuple[str, str]:
    """Return (base, quote) of a canonical symbol: `BTC-USDT` → (`BTC`, `USDT`)."""
    base, _, quote = symbol.rpartition("-")
    if not base or not quote:
        raise ValueError(f"{symbol!r} is not a canonical BASE-QUOTE symbol")
    return base, quote


def leg_need(
    symbol: str, side: Side, quantity: Decimal, limit_price: Decimal, fee_bps: Decimal
) -> tuple[str, Decimal]:
    """Return the asset and the amount a leg of `quantity` limited at `limit_price` may spend (exact)."""
    base, quote = symbol_assets(symbol)
    if side == "sell":
        return base, quantity
    return quote, limit_price * quantity * (1 + fee_bps / BPS)


def protective_price(
    price: Decimal, side: Side, slippage_bps: Decimal, limit_price: Decimal | None
) -> Decimal:
    """Return a leg's IOC limit when `price` is the worst level it takes (as `leg_limit` computes it)."""
    allowance = slippage_bps / BPS
    widened = price * (1 + allowance) if side == "buy" else price * (1 - allowance)
    if limit_price is None:
        return widened
    return min(widened, limit_price) if side == "buy" else max(widened, limit_price)


def quantity_step(levels: Sequence[Level], quantities: Iterable[Decimal] = ()) -> Decimal:
    """Return the finest size step among the book's quantities (and `quantities`): 10^-places."""
    places = quoted_places([*(size for _, size in levels), *quantities])
    return Decimal(1).scaleb(-places)


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    """Return `value` rounded down onto multiples of `step` (never more than `value`)."""
    if value <= 0:
        return _ZERO
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


@dataclass(frozen=True, slots=True)
class LegTerms:
    """How a leg on one venue would be limited and charged: the planner's view of its cost."""

    side: Side
    fee_bps: Decimal
    slippage_bps: Decimal
    limit_price: Decimal | None  # the user's limit; None = market

    def unit_cost(self, marginal: Decimal) -> Decimal:
        """Return the most one unit of a buy costs when `marginal` is the worst level it takes."""
        return protective_price(marginal, self.side, self.slippage_bps, self.limit_price) * (
            1 + self.fee_bps / BPS
        )

    def need(self, levels: Sequence[Level], quantity: Decimal) -> Decimal:
        """Return what a leg taking `quantity` from `levels` needs: quote for a buy, base for a sell."""
        if self.side == "sell":
            return quantity
        marginal = marginal_price(levels, quantity, self.limit_price, self.side)
        return _ZERO if marginal is None else self.unit_cost(marginal) * quantity

    def fundable(self, levels: Sequence[Level], available: Decimal, step: Decimal) -> Decimal:
        """Return the most of `levels` a leg can take with `available`, rounded down onto `step`."""
        if self.side == "sell":
            return floor_to(available, step)
        taken = _ZERO
        for price, size in levels:
            if not within_limit(price, self.limit_price, self.side):
                break
            if not is_usable((price, size)):
                continue
            affordable = available / self.unit_cost(price)  # every unit priced at this level's limit
            if affordable <= taken:
                break  # taking any of this level would re-price what was taken above the balance
            if affordable < taken + size:
                taken = affordable
                break
            taken += size
        return floor_to(taken, step)


def truncate(levels: Sequence[Level], quantity: Decimal) -> tuple[Level, ...]:
    """Return the best levels holding at most `quantity` in total (the last one cut to fit)."""
    kept: list[Level] = []
    left = quantity
    for price, size in levels:
        if left <= 0:
            break
        if not is_usable((price, size)):
            continue
        kept.append((price, min(size, left)))
        left -= min(size, left)
    return tuple(kept)


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A venue that cannot fund a leg: the asset, what the leg needs and what is available."""

    venue: str
    asset: str
    needed: Decimal
    available: Decimal

    def text(self) -> str:
        """Return "needs 6400.64 USDT, 100 available" (the need rounded up to 8 decimals)."""
        needed = decimal_text(money_up(self.needed))
        return f"needs {needed} {self.asset}, {decimal_text(self.available)} available"


def fund(
    venue: str,
    symbol: str,
    terms: LegTerms,
    levels: Sequence[Level],
    quantity: Decimal,
    available: Decimal | None,
) -> tuple[Decimal | None, Shortfall | None]:
    """Return how much of `levels` the venue's `available` funds (None: untracked) and its shortfall.

    The shortfall is set when the venue cannot fund all that its book offers of `quantity`:
    it names the asset (quote for a buy, base for a sell), the need and what is available.
    """
    if available is None:
        return None, None
    fundable = terms.fundable(levels, max(available, _ZERO), quantity_step(levels, (quantity,)))
    offered, _ = walk_book(levels, quantity, terms.limit_price, terms.side)
    if fundable >= offered:
        return fundable, None
    base, quote = symbol_assets(symbol)
    asset = quote if terms.side == "buy" else base
    return fundable, Shortfall(venue, asset, terms.need(levels, offered), available)
