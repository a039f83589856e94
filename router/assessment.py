"""Each venue's assessment for one routing request: its gate, the walk of its book, its funding.

Pure, like `router.routing`, which plans over these assessments. A venue is
excluded for the first of `EXCLUSION_REASONS` that applies, in that order: the
`GATE_REASONS` decide from the snapshot alone (a venue past them has a fresh
usable book); then the walk of its book (`router.book_walk`) for the quantity
within the limit price and slippage; last its balance (`router.funding`). `split`
caps each venue's book at what it can fund and excludes only a venue that can
fund nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from connectors.types import Level, Quote, Side
from router.book_walk import VenueWalk, walk_venue
from router.funding import LegTerms, Shortfall, fund, truncate
from router.precision import quoted_places
from router.route_plan import Considered, RouteRequest, VenueView

__all__ = [
    "EXCLUSION_REASONS",
    "GATE_REASONS",
    "Assessed",
    "assess_venues",
    "is_preferred",
    "priced",
    "venue_all_in",
]

# Gate reasons decide from the snapshot alone; a venue past them has a fresh usable book.
GATE_REASONS: Final = ("not_allowed", "excluded_by_preferences", "no_quote", "stale", "resyncing", "crossed")
EXCLUSION_REASONS: Final = (
    *GATE_REASONS,
    "insufficient_depth",
    "limit_price",
    "slippage_exceeded",
    "insufficient_balance",
)

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Assessed:
    """One venue after the gate and, when it passed, the walk of its book."""

    view: VenueView
    side: Side
    excluded: str | None
    levels: tuple[Level, ...] = ()  # the side of its book the order takes (split: what it can fund)
    walk: VenueWalk | None = None
    shortfall: Shortfall | None = None  # set when its balance cannot fund all the book offers

    @property
    def venue(self) -> str:
        """The venue id."""
        return self.view.venue

    @property
    def places(self) -> int:
        """The decimal places its book quotes prices in (how its prices are shown)."""
        return quoted_places(price for price, _ in self.levels)

    def considered(self) -> Considered:
        """Return the venue as a plan (or a NoRoute) lists it among those considered."""
        view, walk = self.view, self.walk
        vwap, score = (None, None) if walk is None else (walk.vwap, walk.score)
        return Considered(
            view.venue,
            vwap,
            view.taker_fee_bps,
            view.quote_age_ms,
            score,
            self.excluded,
            self.side,
            self.places,
        )


def assess_venues(request: RouteRequest, venues: Sequence[VenueView]) -> list[Assessed]:
    """Assess every venue of `venues` for `request`, in venue-id order; raise ValueError on a bad snapshot."""
    return [_assess(request, view) for view in _ordered(request, venues)]


def _ordered(request: RouteRequest, venues: Sequence[VenueView]) -> list[VenueView]:
    if twice := sorted(venue for venue, n in Counter(view.venue for view in venues).items() if n > 1):
        raise ValueError(f"venues given more than once: {', '.join(twice)}")
    for view in venues:
        if view.quote is not None and view.quote.symbol != request.symbol:
            raise ValueError(f"{view.venue}: quote is for {view.quote.symbol}, not {request.symbol}")
    return sorted(venues, key=lambda view: view.venue)


def _gate(request: RouteRequest, view: VenueView) -> str | None:
    if request.allowed_venues is not None and view.venue not in request.allowed_venues:
        return "not_allowed"
    if view.venue in request.excluded_venues:
        return "excluded_by_preferences"
    if view.quote is None:
        return "no_quote"
    # An unknown age cannot be shown to be fresh.
    if view.quote_age_ms is None or view.quote_age_ms > request.max_quote_age_ms:
        return "stale"
    if view.resyncing:
        return "resyncing"
    if view.quote.crossed:
        return "crossed"
    return None


def _levels(quote: Quote, side: Side) -> tuple[Level, ...]:
    # A buy takes the asks, a sell hits the bids.
    return quote.ask_levels() if side == "buy" else quote.bid_levels()


def _assess(request: RouteRequest, view: VenueView) -> Assessed:
    gate = _gate(request, view)
    if gate is not None or view.quote is None:
        return Assessed(view, request.side, gate)
    levels = _levels(view.quote, request.side)
    pooled = request.strategy == "split"
    fundable, shortfall = _funding(request, view, levels)
    if pooled and fundable is not None and shortfall is not None:
        levels = truncate(levels, fundable)  # split takes from each venue only what it can pay for
    walk = walk_venue(
        levels,
        request.quantity,
        request.limit_price,
        request.side,
        fee_bps=view.taker_fee_bps,
        bias_bps=request.preferred_bias_bps if is_preferred(request, view.venue) else _ZERO,
        max_slippage_bps=request.max_slippage_bps,
        pooled=pooled,  # split judges depth and slippage across venues
    )
    excluded = walk.excluded
    # Single-venue strategies skip a venue short of funds; split skips one that can fund nothing.
    if shortfall is not None and (fundable == 0 if pooled else excluded is None):
        excluded = "insufficient_balance"
    return Assessed(view, request.side, excluded, levels, walk, shortfall)


def _funding(
    request: RouteRequest, view: VenueView, levels: tuple[Level, ...]
) -> tuple[Decimal | None, Shortfall | None]:
    """Return how much of the book `view`'s balance can fund (None: untracked) and its shortfall, if short."""
    available = view.available_quote if request.side == "buy" else view.available_base
    terms = LegTerms(request.side, view.taker_fee_bps, request.max_slippage_bps, request.limit_price)
    return fund(view.venue, request.symbol, terms, levels, request.quantity, available)


def is_preferred(request: RouteRequest, venue: str) -> bool:
    """Whether `venue` gets the preferred bias under `request`'s strategy."""
    return request.strategy == "preferred" and venue in request.preferred_venues


def priced(entry: Assessed) -> tuple[VenueWalk, Decimal]:
    """Return an eligible venue's walk and score (its all-in price with the bias)."""
    walk = entry.walk
    if walk is None or walk.score is None:  # eligible venues filled something, so they are priced
        raise ValueError(f"{entry.venue} was not priced")
    return walk, walk.score


def venue_all_in(entry: Assessed) -> Decimal:
    """Return an eligible venue's all-in (taker fee included) per-unit price, without the bias."""
    walk, _ = priced(entry)
    assert walk.all_in is not None  # priced walks have both
    return walk.all_in
