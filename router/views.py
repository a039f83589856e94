"""What the planner sees of each venue for one symbol: its quote and age, fee, latency and funds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

from router.balances import BalanceBook
from router.cache import PriceCache
from router.funding import symbol_assets
from router.routing import VenueView


def venue_views(
    cache: PriceCache,
    taker_fee_bps: Mapping[str, Decimal],
    ack_latency_ms: Callable[[str], float | None],
    balances: BalanceBook,
    symbol: str,
) -> list[VenueView]:
    """Return a view of every venue in `taker_fee_bps` (sorted) for `symbol`, as of the cache's clock now."""
    now = cache.clock_ns()
    base, quote = symbol_assets(symbol)
    views = []
    for venue, fee in sorted(taker_fee_bps.items()):
        entry = cache.get(venue, symbol)
        views.append(
            VenueView(
                venue=venue,
                quote=None if entry is None else entry.quote,
                quote_age_ms=None if entry is None else entry.age_ns(now) / 1e6,
                taker_fee_bps=fee,
                ack_latency_ms=ack_latency_ms(venue),
                available_base=balances.available(venue, base),
                available_quote=balances.available(venue, quote),
            )
        )
    return views
