"""PriceCache: the freshest quote of every (venue, symbol), with a TTL and per-entry age.

A quote's age is the older of two readings. By arrival: entries are stamped
with the cache's injected monotonic clock when they arrive. By the exchange's
own time, where the venue stamps its messages (`Quote.exchange_ns`): how far
behind its recent best the venue's stream is running (`FeedLag`), so a quote
that arrives now but was stamped long ago (a lagging venue, a backlog replayed
after a reconnect) counts as old, while a constant clock offset between the
venue and us does not. An entry older than `ttl_ms` is expired: it is never
served and is dropped on sight. Decisions use the stricter `max_quote_age_ms`:
a quote older than that is still cached but not fresh, and `get_best_price` and
the detector ignore it.

A quote that cannot be true (crossed: bid at or above ask; a price not
positive) is never stored: it withdraws the venue's entry for
the symbol, whatever a feed sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import msgspec

from connectors.types import Quote, Side

_NS_PER_MS = 1_000_000
_ZERO = Decimal(0)
# How long a venue's lowest lag is remembered: long enough to span a reconnect and the backlog
# it may replay, short enough that a changed route or clock is learnt within a minute.
LAG_WINDOW_MS = 60_000


class FeedLag:
    """How far one venue's stream trails its own recent best, from the exchange times it stamps.

    Each stamped quote gives `lag = received_ns - exchange_ns`: the one-way
    latency plus the venue's clock offset from ours (negative when its clock is
    ahead). Neither part can be told apart from the stream alone, and no venue's
    REST server time is needed: the minimum lag over a sliding window (the
    latency of the quickest recent message, plus the offset) is the venue's
    baseline, and `behind = lag - minimum` is how much older than that a quote
    already was when it arrived. A constant offset cancels out; a venue whose
    engine lags, or a backlog replayed after a reconnect, shows as `behind`.

    The window is two buckets of half `window_ns` each, rotated as quotes arrive:
    the minimum spans the last one to two half-windows that saw quotes, so a
    silent spell (a reconnect) keeps the baseline from before it. Limits: a
    backlog before the venue's first quotes has no baseline to be judged by, and
    a step of our wall clock forward makes the venue's quotes look behind (too
    old, never too fresh) until the window forgets the old minimum.
    """

    __slots__ = ("_current", "_half_ns", "_previous", "_rotate_at_ns", "behind_ns", "lag_ns")

    def __init__(self, window_ns: int = LAG_WINDOW_MS * _NS_PER_MS) -> None:
        """Remember the lowest lag over `window_ns` (two buckets of half of it)."""
        if window_ns < 2:
            raise ValueError(f"window_ns must be at least 2, got {window_ns!r}")
        self._half_ns = window_ns // 2
        self._current: int | None = None
        self._previous: int | None = None
        self._rotate_at_ns = 0
        self.lag_ns = 0  # the last quote's received_ns - exchange_ns
        self.behind_ns = 0  # how far that exceeded the baseline

    @property
    def baseline_ns(self) -> int | None:
        """Return the lowest lag in the window (latency + clock offset), None before the first quote."""
        current, previous = self._current, self._previous
        if current is None or previous is None:
            return current
        return min(current, previous)

    def observe(self, lag_ns: int, now_ns: int) -> int:
        """Take one quote's lag at monotonic time `now_ns`; return how far it is behind the baseline (≥ 0)."""
        current = self._current
        if current is None or now_ns >= self._rotate_at_ns:
            self._previous = current
            self._current = current = lag_ns
            self._rotate_at_ns = now_ns + self._half_ns
        elif lag_ns < current:
            self._current = current = lag_ns
        previous = self._previous
        baseline = current if previous is None or current < previous else previous
        self.lag_ns = lag_ns
        behind = self.behind_ns = lag_ns - baseline
        return behind


class CachedQuote(msgspec.Struct, frozen=True, gc=False):
    """A quote and the monotonic time (ns) its age counts from.

    `stored_ns` is when the cache took it, less the age it already had on arrival
    (its time in transit, how far behind its venue's stream was): see `PriceCache.update`.

    A frozen msgspec Struct rather than a dataclass: one is built for every quote
    the cache takes, and a frozen dataclass costs several times as much to build.
    """

    quote: Quote
    stored_ns: int

    def age_ns(self, now_ns: int) -> int:
        """Return how old the quote is now, in nanoseconds: since arrival, plus the age it arrived with."""
        return now_ns - self.stored_ns


@dataclass(frozen=True, slots=True)
class BestPrice:
    """The best fresh price for one side of a symbol across venues."""

    venue: str
    symbol: str
    action: Side
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
    # Quotes refused because they cannot be true (crossed, a price not positive).
    refused: int = 0


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
        lag_window_ms: int = LAG_WINDOW_MS,
    ) -> None:
        """Serve entries up to `ttl_ms`, use them for decisions up to `max_quote_age_ms`.

        `clock_ns` is the monotonic clock ages are measured on; `lag_window_ms` how
        long each venue's lowest exchange-time lag is remembered (`FeedLag`).
        """
        if ttl_ms <= 0 or max_quote_age_ms <= 0 or lag_window_ms <= 0:
            raise ValueError("ttl_ms, max_quote_age_ms and lag_window_ms must be positive")
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
        self._refused = 0
        self._lag_window_ns = lag_window_ms * _NS_PER_MS
        self._lags: dict[str, FeedLag] = {}

    def update(self, quote: Quote, *, age_ns: int = 0) -> CachedQuote | None:
        """Store `quote` as the venue's latest for its symbol, stamped with its age; return the entry.

        `age_ns` is how old the quote already is on arrival — e.g. its time in
        transit through Kafka in scale-out mode — so freshness rules see its true age.
        A quote the venue stamped is older still by how far its stream is behind
        (`FeedLag`). A quote that cannot be true is refused: the venue's entry for the
        symbol is withdrawn and None returned.
        """
        if not quote.ask > quote.bid > _ZERO:  # sizes are checked by every parser and from_message
            self._refused += 1
            self.invalidate(quote.venue, quote.symbol)
            return None
        stored_ns = now_ns = self.clock_ns()
        if age_ns > 0:
            stored_ns -= age_ns
        exchange_ns = quote.exchange_ns
        if exchange_ns is not None:
            lag = self._lags.get(quote.venue)
            if lag is None:
                lag = self._lags[quote.venue] = FeedLag(self._lag_window_ns)
            stored_ns -= lag.observe(quote.received_ns - exchange_ns, now_ns)
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

    def get_best_price(self, symbol: str, action: Side) -> BestPrice | None:
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
        return CacheStats(
            self._hits, self._misses, self._expirations, self._entries, self._invalidations, self._refused
        )

    def feed_lags(self) -> dict[str, FeedLag]:
        """Return venue → its stream's lag, for every venue that has sent a stamped quote."""
        return dict(self._lags)

    def _drop(self, symbol: str, venue: str) -> None:
        del self._by_symbol[symbol][venue]
        self._entries -= 1
        self._expirations += 1
