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
from dataclasses import replace
from decimal import Decimal

from connectors.types import BPS, decimal_text
from router.assessment import (
    EXCLUSION_REASONS,
    GATE_REASONS,
    Assessed,
    assess_venues,
    is_preferred,
    priced,
    venue_all_in,
)
from router.book_walk import (
    Book,
    Take,
    book_slippage_bps,
    pool_fill,
    preference_cost_bps,
    rank_key,
    walk_book,
)
from router.precision import bps_up
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

# The planner's API: the types live in `router.route_plan`, each venue's assessment in
# `router.assessment`, the book arithmetic in `router.book_walk`.
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


_ZERO = Decimal(0)


def plan_route(request: RouteRequest, venues: Sequence[VenueView]) -> RoutePlan:
    """Plan the best execution of `request` over `venues`; raise NoRoute when no route fits.

    Every venue passed in appears exactly once in the plan's (or the error's)
    `considered`, in venue-id order.
    """
    assessed = assess_venues(request, venues)
    if request.strategy == "split":
        return _plan_split(request, assessed)
    return _plan_single(request, assessed)


def _plan_single(request: RouteRequest, assessed: list[Assessed]) -> RoutePlan:
    side = request.side
    eligible = [entry for entry in assessed if entry.excluded is None]
    if not eligible:
        raise _no_route(request, assessed)
    if request.strategy == "fastest":
        # Unknown latencies rank after every known one, then the all-in price decides.
        ranked = sorted(eligible, key=lambda e: (*_latency_key(e), rank_key(priced(e)[1], side), e.venue))
        reason = _fastest_reason(ranked)
    else:
        # At an equal score a preferred venue wins: its bias is honoured up to and including its value.
        ranked = sorted(
            eligible,
            key=lambda e: (rank_key(priced(e)[1], side), not is_preferred(request, e.venue), e.venue),
        )
        reason = (
            _preferred_reason(request, ranked) if request.strategy == "preferred" else _best_reason(ranked)
        )
    chosen = ranked[0]
    walk, _ = priced(chosen)
    vwap = walk.notional / walk.filled
    fee = walk.notional * chosen.view.taker_fee_bps / BPS
    leg = RouteLeg(chosen.venue, walk.filled, vwap, fee, side, chosen.places)
    reason = f"{request.strategy}: {reason} {_summary(assessed)}"
    return RoutePlan(request.strategy, side, (leg,), _considered(assessed), reason, vwap)


def _latency_key(entry: Assessed) -> tuple[bool, float]:
    latency = entry.view.ack_latency_ms
    return (latency is None, 0.0 if latency is None else latency)


def _best_reason(ranked: list[Assessed]) -> str:
    chosen = ranked[0]
    head = f"{chosen.venue} all-in {_show(chosen, priced(chosen)[1])}"
    if len(ranked) == 1:
        return f"{head}, the only eligible venue"
    return f"{head} beats {ranked[1].venue} {_show(ranked[1], priced(ranked[1])[1])}"


def _preferred_reason(request: RouteRequest, ranked: list[Assessed]) -> str:
    """Say what the preference cost: the best preferred venue against the best other one, all-in."""
    bias = f"bias {decimal_text(request.preferred_bias_bps)} bps"
    preferred = [entry for entry in ranked if is_preferred(request, entry.venue)]
    others = [entry for entry in ranked if not is_preferred(request, entry.venue)]
    if not preferred:
        named = ", ".join(request.preferred_venues)
        return f"no preferred venue ({named}) is eligible; {_best_reason(ranked)}"
    best, other = preferred[0], (others[0] if others else None)
    prices = f"{best.venue} all-in {_show(best, venue_all_in(best))}"
    if other is None:
        return f"preferred {prices}, no other venue eligible ({bias})"
    prices += f", {other.venue} {_show(other, venue_all_in(other))}"
    cost = _show_cost_bps(preference_cost_bps(venue_all_in(best), venue_all_in(other), request.side))
    if ranked[0] is best:
        return f"preferred {best.venue} over {other.venue}: {cost} bps ({bias}); {prices}"
    return (
        f"{other.venue} over preferred {best.venue}: the preference would cost {cost} bps, "
        f"more than its {bias}; {prices}"
    )


def _fastest_reason(ranked: list[Assessed]) -> str:
    chosen = ranked[0]
    within = f"{_count(len(ranked), 'venue')} within slippage"
    unknown = ", ".join(entry.venue for entry in ranked if entry.view.ack_latency_ms is None)
    all_in_text = f"all-in {_show(chosen, priced(chosen)[1])}"
    latency = chosen.view.ack_latency_ms
    if latency is None:
        return (
            f"no ack latency known for any of {within} ({unknown}); {chosen.venue} has the best {all_in_text}"
        )
    text = f"{chosen.venue} ack {latency:g} ms is the lowest among {within}"
    if unknown:
        text += f", unknown latency ranked last ({unknown})"
    return f"{text}; {all_in_text}"


def _plan_split(request: RouteRequest, assessed: list[Assessed]) -> RoutePlan:
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


def _considered(assessed: Iterable[Assessed]) -> tuple[Considered, ...]:
    return tuple(entry.considered() for entry in assessed)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _summary(assessed: Sequence[Assessed]) -> str:
    """Return "(3 venues considered, 1 stale, 1 crossed)", reasons in precedence order."""
    counts = Counter(entry.excluded for entry in assessed if entry.excluded is not None)
    parts = [f"{_count(len(assessed), 'venue')} considered"]
    parts += [f"{counts[reason]} {reason}" for reason in EXCLUSION_REASONS if counts[reason]]
    return f"({', '.join(parts)})"


def _what(request: RouteRequest) -> str:
    return f"{request.side} {decimal_text(request.quantity)} {request.symbol}"


def _no_route(request: RouteRequest, assessed: Sequence[Assessed]) -> NoRoute:
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


def _reject(code: str, lead: str, assessed: Sequence[Assessed], request: RouteRequest) -> NoRoute:
    """Return the NoRoute whose message is `lead` followed by every venue and why it was not used."""
    details = "; ".join(map(_venue_detail, assessed)) or "no venue quotes it"
    return NoRoute(code, f"{lead}: {details}", _considered(assessed), request.strategy)


def _venue_detail(entry: Assessed) -> str:
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


def _show(entry: Assessed, value: Decimal) -> str:
    """Return a price of `entry`'s book for a sentence, as published."""
    return price_text(value, entry.places, entry.side)


def _show_bps(value: Decimal) -> str:
    """Return a bps figure for a sentence, rounded up to 2 decimals: a cost is never understated."""
    return decimal_text(bps_up(value))


def _show_cost_bps(value: Decimal) -> str:
    """Return `_show_bps` with its sign: "+98.7" costs more, "-3.25" saves."""
    text = _show_bps(value)
    return text if text.startswith("-") else f"+{text}"
