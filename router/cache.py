"""PriceCache: the freshest quote of every (venue, symbol), with a TTL and per-entry age.

Entries are stamped with the cache's injected monotonic clock when they arrive,
so ages never depend on the venue's clock or on wall-clock jumps. An entry
older than `ttl_ms` is expired: it is never served and is dropped on sight.
Decisions use the stricter `max_quote_age_ms`: a quote older than that is
still cached but not fresh, and `get_best_price` and the detector ignore it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import msgspec

from connectors.types import Quote

Action = Literal["buy", "sell"]

_NS_PER_MS = 1_000_000


class CachedQuote(msgspec.Struct, frozen=True, gc=False):
    """A quote and the monotonic time (ns) the cache stored it.

    A frozen msgspec Struct rather than a dataclass: one is built for every quote
    the cache takes, and a frozen dataclass costs several times as much to build.
    """

    quote: Quote
    stored_ns: int

    def age_ns(self, now_ns: int) -> int:
        """Return how long ago the quote arrived, in nanoseconds."""
        return now_ns - self.stored_ns


@dataclass(frozen=True, slots=True)
class BestPrice:
    """The best fresh price for one side of a symbol across venues."""

    venue: str
    symbol: str
    action: Action
    price: Decimal
    quantity: Decimal
    quote_age_ms: float


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since start, and the number of entries held now."""

    hits: int
    misses: int
    expirations: int
    entries: int
    invalidations: int = 0


class PriceCache:
    """Hold the latest quote per (venue, symbol); serve only what is within TTL.

    Not thread-safe: it lives on one event loop.
    """

    def __init__(
        self,
        *,
        ttl_ms: int = 30_000,
        max_quote_age_ms: int = 1_500,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if ttl_ms <= 0 or max_quote_age_ms <= 0:
            raise ValueError("ttl_ms and max_quote_age_ms must be positive")
        self.ttl_ns = ttl_ms * _NS_PER_MS
        self.max_quote_age_ns = max_quote_age_ms * _NS_PER_MS
        self.clock_ns = clock_ns
        # symbol -> venue -> entry: the detector reads one symbol across venues per update.
        self._by_symbol: dict[str, dict[str, CachedQuote]] = {}
        self._entries = 0
        self._hits = 0
        self._misses = 0
        self._expirations = 0
        self._invalidations = 0

    def update(self, quote: Quote, *, age_ns: int = 0) -> CachedQuote:
        """Store `quote` as the venue's latest for its symbol, stamped now minus `age_ns`.

        `age_ns` is how old the quote already is on arrival — e.g. its time in
        transit through Kafka in scale-out mode — so freshness rules see its true age.
        """
        stored_ns = self.clock_ns()
        if age_ns > 0:
            stored_ns -= age_ns
        entry = CachedQuote(quote, stored_ns)
        venues = self._by_symbol.get(quote.symbol)
        if venues is None:
            self._by_symbol[quote.symbol] = {quote.venue: entry}
            self._entries += 1
        else:
            held = len(venues)
            venues[quote.venue] = entry
            self._entries += len(venues) - held  # one more when the venue is new here
        return entry

    def get(self, venue: str, symbol: str) -> CachedQuote | None:
        """Return the venue's quote for `symbol` if within TTL; count a hit, miss or expiration."""
        venues = self._by_symbol.get(symbol)
        entry = venues.get(venue) if venues is not None else None
        if entry is None:
            self._misses += 1
            return None
        if entry.age_ns(self.clock_ns()) > self.ttl_ns:
            self._drop(symbol, venue)
            self._misses += 1
            return None
        self._hits += 1
        return entry

    def venue_count(self, symbol: str) -> int:
        """Return how many venues have an entry for `symbol`, fresh or not (no lookup is counted)."""
        venues = self._by_symbol.get(symbol)
        return 0 if venues is None else len(venues)

    def fresh(self, symbol: str, *, max_age_ms: int | None = None) -> dict[str, CachedQuote]:
        """Return venue → entry for every quote of `symbol` no older than the decision age limit.

        Expired entries met on the way are dropped. Quotes past `max_quote_age_ms`
        (or `max_age_ms` when given) but within TTL stay cached and are left out.
        """
        venues = self._by_symbol.get(symbol)
        if not venues:
            self._misses += 1
            return {}
        now = self.clock_ns()
        limit = self.max_quote_age_ns if max_age_ms is None else max_age_ms * _NS_PER_MS
        ttl = self.ttl_ns
        fresh: dict[str, CachedQuote] = {}
        expired: list[str] | None = None
        for venue, entry in venues.items():
            age = now - entry.stored_ns
            if age > ttl:
                if expired is None:
                    expired = []
                expired.append(venue)
            elif age <= limit:
                fresh[venue] = entry
        if expired is not None:
            for venue in expired:
                self._drop(symbol, venue)
        if fresh:
            self._hits += 1
        else:
            self._misses += 1
        return fresh

    def get_best_price(self, symbol: str, action: Action) -> BestPrice | None:
        """Return the lowest fresh ask (`buy`) or highest fresh bid (`sell`) across venues.

        Ties go to the larger displayed size, then to the venue id, so the answer
        is deterministic.
        """
        if action not in ("buy", "sell"):
            raise ValueError(f"action must be 'buy' or 'sell', got {action!r}")
        candidates = self.fresh(symbol)
        if not candidates:
            return None

        def rank(item: tuple[str, CachedQuote]) -> tuple[Decimal, Decimal, str]:
            venue, entry = item
            q = entry.quote
            return (q.ask, -q.ask_qty, venue) if action == "buy" else (-q.bid, -q.bid_qty, venue)

        _, entry = min(candidates.items(), key=rank)
        q = entry.quote
        return BestPrice(
            venue=q.venue,
            symbol=symbol,
            action=action,
            price=q.ask if action == "buy" else q.bid,
            quantity=q.ask_qty if action == "buy" else q.bid_qty,
            quote_age_ms=entry.age_ns(self.clock_ns()) / _NS_PER_MS,
        )

    def invalidate(self, venue: str, symbol: str) -> bool:
        """Withdraw the venue's entry for `symbol` at once (its book can no longer be trusted).

        Return whether there was one. Nothing is served for it until a new quote arrives.
        """
        venues = self._by_symbol.get(symbol)
        if venues is None or venue not in venues:
            return False
        del venues[venue]
        self._entries -= 1
        self._invalidations += 1
        return True

    def purge_expired(self) -> int:
        """Drop every entry past TTL; return how many were dropped."""
        now = self.clock_ns()
        stale = [
            (symbol, venue)
            for symbol, venues in self._by_symbol.items()
            for venue, entry in venues.items()
            if now - entry.stored_ns > self.ttl_ns
        ]
        for symbol, venue in stale:
            self._drop(symbol, venue)
        return len(stale)

    def symbols(self) -> list[str]:
        """Return the symbols that have at least one cached entry."""
        return [symbol for symbol, venues in self._by_symbol.items() if venues]

    def entries(self) -> Iterator[CachedQuote]:
        """Iterate over every entry held now, expired or not (for status views)."""
        for venues in self._by_symbol.values():
            yield from venues.values()

    def stats(self) -> CacheStats:
        """Return hit/miss/expiration counters and the entry count."""
        return CacheStats(self._hits, self._misses, self._expirations, self._entries, self._invalidations)

    def _drop(self, symbol: str, venue: str) -> None:
        del self._by_symbol[symbol][venue]
        self._entries -= 1
        self._expirations += 1
