"""Best execution: choose the venue(s) for one order from cached books, taker fees and preferences.

Pure: `plan_route` sees a snapshot (one `VenueView` per venue), does no I/O and
reads no clock; every price, quantity and fee is a Decimal.

Each venue is excluded for the first of these that applies, in this order:
`not_allowed` (outside the request's allow-list), `excluded_by_preferences`,
`no_quote`, `stale` (age over `max_quote_age_ms`, or unknown), `resyncing`,
`crossed`; then its book is walked for the quantity within the limit price:
`insufficient_depth`, `limit_price` (no level at or better than the limit),
`slippage_exceeded`; last `insufficient_balance`, a venue whose available
balance (`VenueView.available_base`/`available_quote`, None = unlimited) cannot
fund the leg it would take (`router.funding`); `split` instead caps each venue's
book at what it can fund and excludes only a venue that can fund nothing.
Slippage is measured on the venue's own book: how far the
VWAP of the levels a leg takes is worse than that book's best price. Another
venue's price never makes a venue's leg "slip", so a venue quoting worse than
the best one (a preferred venue, say) is judged on its own book alone.

Scores are all-in per-unit prices (taker fee in), better = lower for a buy and
higher for a sell; ties break by venue id. `preferred` makes its venues' scores
`preferred_bias_bps` more attractive, measured in bps of the price they compete
with, so a preferred venue wins exactly when it costs at most the bias more than
the best other eligible venue (at an equal score it wins too); the plan's reason
says what the preference cost. `split` pools depth across venues instead of
excluding one for depth, and checks each leg's slippage on its own venue's book.
When nothing fits, `NoRoute` carries the contract's reject code; a venue short of
funds is named in its message with the asset, what it needs and what is available.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Final

from connectors.types import BPS, Level, Quote, Side, decimal_text
from router.book_walk import (
    Book,
    Take,
    VenueWalk,
    book_slippage_bps,
    pool_fill,
    preference_cost_bps,
    rank_key,
    walk_book,
    walk_venue,
)
from router.funding import LegTerms, Shortfall, fund, truncate
from router.precision import bps_up, quoted_places
from router.route_plan import (
    STRATEGIES,
    Considered,
    NoRoute,
    RouteLeg,
    RoutePlan,
    RouteRequest,
    VenueView,
    price_text,
)

# The planner's API: the types live in `router.route_plan`, the book arithmetic in `router.book_walk`.
__all__ = [
    "EXCLUSION_REASONS",
    "GATE_REASONS",
    "STRATEGIES",
    "Considered",
    "NoRoute",
    "RouteLeg",
    "RoutePlan",
    "RouteRequest",
    "VenueView",
    "plan_route",
    "walk_book",
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
class _Assessed:
    """One venue after the gate and, when it passed, the walk of its book."""

    view: VenueView
    side: Side
    excluded: str | None
    levels: tuple[Level, ...] = ()  # the side of its book the order takes (split: what it can fund)
    walk: VenueWalk | None = None
    shortfall: Shortfall | None = None  # set when its balance cannot fund all the book offers

    @property
    def venue(self) -> str:
        return self.view.venue

    @property
    def places(self) -> int:
        return quoted_places(price for price, _ in self.levels)

    def considered(self) -> Considered:
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


def plan_route(request: RouteRequest, venues: Sequence[VenueView]) -> RoutePlan:
    """Plan the best execution of `request` over `venues`; raise NoRoute when no route fits.

    Every venue passed in appears exactly once in the plan's (or the error's)
    `considered`, in venue-id order.
    """
    assessed = [_assess(request, view) for view in _ordered(request, venues)]
    if request.strategy == "split":
        return _plan_split(request, assessed)
    return _plan_single(request, assessed)


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


def _assess(request: RouteRequest, view: VenueView) -> _Assessed:
    gate = _gate(request, view)
    if gate is not None or view.quote is None:
        return _Assessed(view, request.side, gate)
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
        bias_bps=request.preferred_bias_bps if _is_preferred(request, view.venue) else _ZERO,
        max_slippage_bps=request.max_slippage_bps,
        pooled=pooled,  # split judges depth and slippage across venues
    )
    excluded = walk.excluded
    # Single-venue strategies skip a venue short of funds; split skips one that can fund nothing.
    if shortfall is not None and (fundable == 0 if pooled else excluded is None):
        excluded = "insufficient_balance"
    return _Assessed(view, request.side, excluded, levels, walk, shortfall)


def _funding(
    request: RouteRequest, view: VenueView, levels: tuple[Level, ...]
) -> tuple[Decimal | None, Shortfall | None]:
    """Return how much of the book `view`'s balance can fund (None: untracked) and its shortfall, if short."""
    available = view.available_quote if request.side == "buy" else view.available_base
    terms = LegTerms(request.side, view.taker_fee_bps, request.max_slippage_bps, request.limit_price)
    return fund(view.venue, request.symbol, terms, levels, request.quantity, available)


def _is_preferred(request: RouteRequest, venue: str) -> bool:
    return request.strategy == "preferred" and venue in request.preferred_venues


def _priced(entry: _Assessed) -> tuple[VenueWalk, Decimal]:
    walk = entry.walk
    if walk is None or walk.score is None:  # eligible venues filled something, so they are priced
        raise ValueError(f"{entry.venue} was not priced")
    return walk, walk.score


def _plan_single(request: RouteRequest, assessed: list[_Assessed]) -> RoutePlan:
    side = request.side
    eligible = [entry for entry in assessed if entry.excluded is None]
    if not eligible:
        raise _no_route(request, assessed)
    if request.strategy == "fastest":
        # Unknown latencies rank after every known one, then the all-in price decides.
        ranked = sorted(eligible, key=lambda e: (*_latency_key(e), rank_key(_priced(e)[1], side), e.venue))
        reason = _fastest_reason(ranked)
    else:
        # At an equal score a preferred venue wins: its bias is honoured up to and including its value.
        ranked = sorted(
            eligible,
            key=lambda e: (rank_key(_priced(e)[1], side), not _is_preferred(request, e.venue), e.venue),
        )
        reason = (
            _preferred_reason(request, ranked) if request.strategy == "preferred" else _best_reason(ranked)
        )
    chosen = ranked[0]
    walk, _ = _priced(chosen)
    vwap = walk.notional / walk.filled
    fee = walk.notional * chosen.view.taker_fee_bps / BPS
    leg = RouteLeg(chosen.venue, walk.filled, vwap, fee, side, chosen.places)
    reason = f"{request.strategy}: {reason} {_summary(assessed)}"
    return RoutePlan(request.strategy, side, (leg,), _considered(assessed), reason, vwap)


def _latency_key(entry: _Assessed) -> tuple[bool, float]:
    latency = entry.view.ack_latency_ms
    return (latency is None, 0.0 if latency is None else latency)


def _all_in(entry: _Assessed) -> Decimal:
    walk, _ = _priced(entry)
    assert walk.all_in is not None  # priced walks have both
    return walk.all_in


def _best_reason(ranked: list[_Assessed]) -> str:
    chosen = ranked[0]
    head = f"{chosen.venue} all-in {_show(chosen, _priced(chosen)[1])}"
    if len(ranked) == 1:
        return f"{head}, the only eligible venue"
    return f"{head} beats {ranked[1].venue} {_show(ranked[1], _priced(ranked[1])[1])}"


def _preferred_reason(request: RouteRequest, ranked: list[_Assessed]) -> str:
    """Say what the preference cost: the best preferred venue against the best other one, all-in."""
    bias = f"bias {decimal_text(request.preferred_bias_bps)} bps"
    preferred = [entry for entry in ranked if _is_preferred(request, entry.venue)]
    others = [entry for entry in ranked if not _is_preferred(request, entry.venue)]
    if not preferred:
        named = ", ".join(request.preferred_venues)
        return f"no preferred venue ({named}) is eligible; {_best_reason(ranked)}"
    best, other = preferred[0], (others[0] if others else None)
    prices = f"{best.venue} all-in {_show(best, _all_in(best))}"
    if other is None:
        return f"preferred {prices}, no other venue eligible ({bias})"
    prices += f", {other.venue} {_show(other, _all_in(other))}"
    cost = _show_cost_bps(preference_cost_bps(_all_in(best), _all_in(other), request.side))
    if ranked[0] is best:
        return f"preferred {best.venue} over {other.venue}: {cost} bps ({bias}); {prices}"
    return (
        f"{other.venue} over preferred {best.venue}: the preference would cost {cost} bps, "
        f"more than its {bias}; {prices}"
    )


def _fastest_reason(ranked: list[_Assessed]) -> str:
    chosen = ranked[0]
    within = f"{_count(len(ranked), 'venue')} within slippage"
    unknown = ", ".join(entry.venue for entry in ranked if entry.view.ack_latency_ms is None)
    all_in_text = f"all-in {_show(chosen, _priced(chosen)[1])}"
    latency = chosen.view.ack_latency_ms
    if latency is None:
        return (
            f"no ack latency known for any of {within} ({unknown}); {chosen.venue} has the best {all_in_text}"
        )
    text = f"{chosen.venue} ack {latency:g} ms is the lowest among {within}"
    if unknown:
        text += f", unknown latency ranked last ({unknown})"
    return f"{text}; {all_in_text}"


def _plan_split(request: RouteRequest, assessed: list[_Assessed]) -> RoutePlan:
    side, quantity = request.side, request.quantity
    pool = [entry for entry in assessed if entry.excluded is None]
    if not pool:
        raise _no_route(request, assessed)
    books = [Book(entry.venue, entry.levels, entry.view.taker_fee_bps) for entry in pool]
    takes = pool_fill(books, quantity, request.limit_price, side, request.max_venues)
    filled = sum((take.quantity for take in takes), _ZERO)
    if request.limit_price is None and filled < quantity:
        lead = f"across at most {_count(request.max_venues, 'venue')} (only {decimal_text(filled)} available)"
        if any(entry.shortfall is not None for entry in assessed):
            raise _reject(
                "insufficient_balance", f"insufficient balance to {_what(request)} {lead}", assessed, request
            )
        raise _reject("no_liquidity", f"not enough depth to {_what(request)} {lead}", assessed, request)
    levels = {entry.venue: entry.levels for entry in pool}
    slipped = {
        take.venue: slippage
        for take in takes
        if (slippage := book_slippage_bps(levels[take.venue], take.vwap, side)) > request.max_slippage_bps
    }
    if slipped:
        marked = [replace(e, excluded="slippage_exceeded") if e.venue in slipped else e for e in assessed]
        legs_text = ", ".join(f"{venue} {_show_bps(bps)} bps" for venue, bps in slipped.items())
        lead = (
            f"splitting to {_what(request)} slips {legs_text} on its own book, "
            f"over the {decimal_text(request.max_slippage_bps)} bps limit"
        )
        raise _reject("slippage_exceeded", lead, marked, request)
    vwap = sum((take.notional for take in takes), _ZERO) / filled
    places = {entry.venue: entry.places for entry in pool}
    legs = tuple(
        RouteLeg(take.venue, take.quantity, take.vwap, take.fee, side, places[take.venue]) for take in takes
    )
    reason = f"split: {_split_reason(request, takes, places)} {_summary(assessed)}"
    return RoutePlan("split", side, legs, _considered(assessed), reason, vwap)


def _split_reason(request: RouteRequest, takes: list[Take], places: Mapping[str, int]) -> str:
    side = request.side
    parts = ", ".join(
        f"{decimal_text(take.quantity)} on {take.venue} at {price_text(take.vwap, places[take.venue], side)}"
        for take in takes
    )
    quantity = sum((take.quantity for take in takes), _ZERO)
    # All-in cost is the notional with the fee paid (buy) or given up (sell).
    sign = 1 if request.side == "buy" else -1
    cost = sum((take.notional + sign * take.fee for take in takes), _ZERO)
    return (
        f"{parts}, overall all-in {price_text(cost / quantity, max(places.values()), side)}, "
        "taken in all-in price order "
        f"from at most {_count(request.max_venues, 'venue')}"
    )


def _considered(assessed: Iterable[_Assessed]) -> tuple[Considered, ...]:
    return tuple(entry.considered() for entry in assessed)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _summary(assessed: Sequence[_Assessed]) -> str:
    """Return "(3 venues considered, 1 stale, 1 crossed)", reasons in precedence order."""
    counts = Counter(entry.excluded for entry in assessed if entry.excluded is not None)
    parts = [f"{_count(len(assessed), 'venue')} considered"]
    parts += [f"{counts[reason]} {reason}" for reason in EXCLUSION_REASONS if counts[reason]]
    return f"({', '.join(parts)})"


def _what(request: RouteRequest) -> str:
    return f"{request.side} {decimal_text(request.quantity)} {request.symbol}"


def _no_route(request: RouteRequest, assessed: Sequence[_Assessed]) -> NoRoute:
    what = _what(request)
    reasons = {entry.excluded for entry in assessed}
    if "insufficient_balance" in reasons:  # a venue could take it but cannot pay for it
        return _reject("insufficient_balance", f"insufficient balance to {what}", assessed, request)
    if reasons <= set(GATE_REASONS):  # no venue the request may use has a fresh usable book
        if assessed and reasons <= {"not_allowed", "excluded_by_preferences"}:
            return _reject("no_liquidity", f"no venue may be used to {what}", assessed, request)
        return _reject("stale_prices", f"no fresh usable book to {what}", assessed, request)
    if "slippage_exceeded" in reasons:
        limit = decimal_text(request.max_slippage_bps)
        lead = f"every book that could {what} is over the {limit} bps slippage limit"
        return _reject("slippage_exceeded", lead, assessed, request)
    within = "" if request.limit_price is None else f" at or better than {decimal_text(request.limit_price)}"
    return _reject("no_liquidity", f"not enough liquidity to {what}{within}", assessed, request)


def _reject(code: str, lead: str, assessed: Sequence[_Assessed], request: RouteRequest) -> NoRoute:
    """Return the NoRoute whose message is `lead` followed by every venue and why it was not used."""
    details = "; ".join(map(_venue_detail, assessed)) or "no venue quotes it"
    return NoRoute(code, f"{lead}: {details}", _considered(assessed), request.strategy)


def _venue_detail(entry: _Assessed) -> str:
    walk, reason = entry.walk, entry.excluded or "eligible"
    if entry.shortfall is not None:  # short of funds: excluded for it, or (split) capped by it
        return f"{entry.venue} {reason} ({entry.shortfall.text()})"
    # Figures only where the venue itself failed on them (split marks used venues by the overall VWAP).
    if walk is None or walk.excluded != entry.excluded:
        return f"{entry.venue} {reason}"
    if reason == "slippage_exceeded" and walk.slippage_bps is not None:
        return f"{entry.venue} {reason} ({_show_bps(walk.slippage_bps)} bps)"
    if reason == "insufficient_depth" and walk.filled:
        return f"{entry.venue} {reason} (only {decimal_text(walk.filled)})"
    return f"{entry.venue} {reason}"


def _show(entry: _Assessed, value: Decimal) -> str:
    """Return a price of `entry`'s book for a sentence, as published."""
    return price_text(value, entry.places, entry.side)


def _show_bps(value: Decimal) -> str:
    """Return a bps figure for a sentence, rounded up to 2 decimals: a cost is never understated."""
    return decimal_text(bps_up(value))


def _show_cost_bps(value: Decimal) -> str:
    """Return `_show_bps` with its sign: "+98.7" costs more, "-3.25" saves."""
    text = _show_bps(value)
    return text if text.startswith("-") else f"+{text}"
