"""Order-book depth for the simulator: a book of N levels a side around the quote a venue serves.

The best level of each side is the venue's BBO (from the price model or a
scripted quote), so depth and BBO always agree. Below it, levels sit 1 to
`2 × base gap` ticks apart, the base gap being about half a basis point of the
symbol's start price, with log-uniform sizes that grow with depth. Re-anchoring
to a new BBO removes the levels the new top crossed, fills holes wider than the
largest gap and trims the side to N levels; each tick a few inner levels also
change size, or move. Every change of the book is one `DepthEvent`: the net
level changes, the update ids they consumed and the book before and after,
which each venue protocol turns into its own diff frames.

Ids: each changed level consumes one update id (Binance `U..u`); `last_id` is
the book's current id (Binance `lastUpdateId`, OKX `seqId`). A view id counts
the changes of the top-`d` view for the depths a venue serves as separate
topics (Bybit `orderbook.50` `u`). Deterministic for a given `random.Random`.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from connectors.sim.market import BookTop, SimulatorError, SymbolSpec
from connectors.types import BookSide, Level

Change = tuple[BookSide, Decimal, Decimal]
"""One level change: (side, price, new quantity); quantity 0 removes the level."""

FIRST_ID: Final = 1_000_001
_BASE_GAP_BPS: Final = 0.5
_SIZE_GROWTH_PER_LEVEL: Final = 0.05
_EVOLVE_MAX_CHANGES: Final = 3
_MOVE_PROBABILITY: Final = 0.15
_NUDGE_INDEX: Final = 5


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    """One symbol's book at one moment: both sides best first, its ids and its change time."""

    symbol: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    last_id: int
    view_ids: tuple[tuple[int, int], ...]
    changed_ms: int
    tick: Decimal
    """The symbol's price tick: its number of decimals is the pair's price precision."""
    step: Decimal
    """The symbol's lot step: its number of decimals is the pair's quantity precision."""

    def view_id(self, depth: int) -> int:
        """Return the id of the top-`depth` view (counts that view's changes)."""
        for served, view in self.view_ids:
            if served == depth:
                return view
        raise SimulatorError(f"no view id for depth {depth}; served: {[d for d, _ in self.view_ids]}")


@dataclass(frozen=True, slots=True)
class DepthEvent:
    """One change of a book: net level changes, the ids they consumed, the book before and after."""

    changes: tuple[Change, ...]
    before: DepthSnapshot
    after: DepthSnapshot
    bad_checksum: bool = False
    """A fault: the venue sends this event with a checksum that does not match the book."""

    @property
    def symbol(self) -> str:
        """Return the canonical symbol of the book that changed."""
        return self.after.symbol

    @property
    def first_id(self) -> int:
        """Return the first update id this event consumed (Binance `U`)."""
        return self.before.last_id + 1


@dataclass(slots=True)
class _Sides:
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)

    def side(self, side: BookSide) -> dict[Decimal, Decimal]:
        return self.bids if side == "bid" else self.asks


def top_levels(
    levels: Mapping[Decimal, Decimal], side: BookSide, depth: int | None = None
) -> tuple[Level, ...]:
    """Return a side's levels best first (bids high to low, asks low to high), at most `depth`."""
    prices = sorted(levels, reverse=side == "bid")
    return tuple((price, levels[price]) for price in prices[:depth])


def view_changes(
    before: Sequence[Level], after: Sequence[Level], side: BookSide, *, truncated_to: int | None = None
) -> list[Change]:
    """Return the changes that turn view `before` into view `after` (both best first).

    A level that left the view is sent with quantity 0, unless the client
    truncates its book to `truncated_to` levels after each update (as Kraken's
    does): then only a level that left the book itself is sent with 0, not one
    pushed below the depth (the views are read as the top levels of the books).
    """
    old, new = dict(before), dict(after)
    changes: list[Change] = [(side, price, qty) for price, qty in after if old.get(price) != qty]
    for price, _ in before:
        if price not in new and (truncated_to is None or _left_book(price, after, side, truncated_to)):
            changes.append((side, price, Decimal(0)))
    return changes


def _left_book(price: Decimal, view: Sequence[Level], side: BookSide, depth: int) -> bool:
    # Missing from a view that is not full, or from inside its range: gone from the book.
    if len(view) < depth:
        return True
    worst = view[-1][0]
    return price > worst if side == "bid" else price < worst


class SymbolDepth:
    """The book one venue keeps for one symbol; every mutation returns the `DepthEvent` it made."""

    def __init__(
        self,
        symbol: str,
        spec: SymbolSpec,
        *,
        levels: int,
        rng: random.Random,
        view_depths: Iterable[int] = (),
    ) -> None:
        if levels < 1:
            raise SimulatorError("a simulated book needs at least one level a side")
        self.symbol = symbol
        self._spec = spec
        self._levels = levels
        self._rng = rng
        base = max(1, round(spec.start_price * _BASE_GAP_BPS / 10_000 / float(spec.tick)))
        self._max_gap_ticks = 2 * base
        self._book = _Sides()
        self._last_id = FIRST_ID - 1
        self._views = dict.fromkeys(sorted(set(view_depths)), 0)
        self._changed_ms = 0

    @property
    def tick(self) -> Decimal:
        """Return the symbol's price tick."""
        return self._spec.tick

    @property
    def last_id(self) -> int:
        """Return the id of the book's last change."""
        return self._last_id

    def snapshot(self) -> DepthSnapshot:
        """Return the current book, both sides best first, with its ids."""
        return DepthSnapshot(
            symbol=self.symbol,
            bids=top_levels(self._book.bids, "bid"),
            asks=top_levels(self._book.asks, "ask"),
            last_id=self._last_id,
            view_ids=tuple(self._views.items()),
            changed_ms=self._changed_ms,
            tick=self._spec.tick,
            step=self._spec.step,
        )

    def update(self, top: BookTop | None, *, evolve: bool, now_ms: int) -> DepthEvent | None:
        """Re-anchor to `top` (if given), let inner levels move (if `evolve`); None if nothing changed."""
        before = self.snapshot()
        if top is not None:
            self._book.bids = self._anchored("bid", top.bid, top.bid_qty)
            self._book.asks = self._anchored("ask", top.ask, top.ask_qty)
        if evolve:
            for _ in range(self._rng.randint(1, _EVOLVE_MAX_CHANGES)):
                self._evolve_one(self._rng.choice(("bid", "ask")))
        return self._commit(before, now_ms)

    def nudge(self, now_ms: int) -> DepthEvent:
        """Change the size of an inner level near the top (bid side if it has one); the BBO stays as it is.

        The level is the sixth (or the deepest, in a thinner book): deep enough that the next
        tick rarely touches it, shallow enough to stay in a 10-level view, so a client that
        missed this change keeps a wrong level that a checksum exposes.
        """
        before = self.snapshot()
        side: BookSide = "bid" if len(before.bids) > 1 else "ask"
        levels = before.bids if side == "bid" else before.asks
        if len(levels) < 2:
            raise SimulatorError(f"{self.symbol}: the book has no inner level to change yet")
        price, qty = levels[min(_NUDGE_INDEX, len(levels) - 1)]
        self._book.side(side)[price] = qty + self._spec.step
        event = self._commit(before, now_ms)
        assert event is not None  # the quantity changed
        return event

    def _commit(self, before: DepthSnapshot, now_ms: int) -> DepthEvent | None:
        changes = self._diff(before)
        if not changes:
            return None
        self._last_id += len(changes)
        self._changed_ms = now_ms
        bids, asks = top_levels(self._book.bids, "bid"), top_levels(self._book.asks, "ask")
        for depth in self._views:
            if (before.bids[:depth], before.asks[:depth]) != (bids[:depth], asks[:depth]):
                self._views[depth] += 1
        views = tuple(self._views.items())
        after = DepthSnapshot(
            self.symbol, bids, asks, self._last_id, views, now_ms, self._spec.tick, self._spec.step
        )
        return DepthEvent(changes=changes, before=before, after=after)

    def _diff(self, before: DepthSnapshot) -> tuple[Change, ...]:
        changes: list[Change] = []
        sides: tuple[tuple[BookSide, dict[Decimal, Decimal]], ...] = (
            ("bid", dict(before.bids)),
            ("ask", dict(before.asks)),
        )
        for side, old in sides:
            new = self._book.side(side)
            changes.extend((side, p, q) for p, q in top_levels(new, side) if old.get(p) != q)
            changes.extend((side, p, Decimal(0)) for p, _ in top_levels(old, side) if p not in new)
        return tuple(changes)

    def _anchored(self, side: BookSide, best: Decimal, best_qty: Decimal) -> dict[Decimal, Decimal]:
        """Return the side with `best` on top: crossed levels gone, wide holes filled, N levels."""
        levels = self._book.side(side)
        worse = [lv for lv in top_levels(levels, side) if (lv[0] < best if side == "bid" else lv[0] > best)]
        out: dict[Decimal, Decimal] = {best: best_qty} if best_qty > 0 else {}
        step = -self._spec.tick if side == "bid" else self._spec.tick
        previous, queue = best, iter(worse)
        following = next(queue, None)
        while len(out) < self._levels:
            if following is not None and abs(previous - following[0]) <= self._max_gap_ticks * abs(step):
                out[following[0]] = following[1]
                previous, following = following[0], next(queue, None)
                continue
            price = previous + step * self._rng.randint(1, self._max_gap_ticks)
            if price <= 0:
                break
            out[price] = self._draw_qty(len(out))
            previous = price
        return out

    def _evolve_one(self, side: BookSide) -> None:
        levels = self._book.side(side)
        ordered = top_levels(levels, side)
        if len(ordered) < 3:
            return
        index = self._rng.randrange(1, len(ordered))  # never the top: that one is the BBO
        price = ordered[index][0]
        if self._rng.random() >= _MOVE_PROBABILITY:
            levels[price] = self._draw_qty(index)
            return
        # A resting order leaves and another joins inside an inner gap of at least two ticks.
        del levels[price]
        rest = top_levels(levels, side)
        gaps = [(a, b) for (a, _), (b, _) in itertools.pairwise(rest[1:])]
        wide = [(a, b) for a, b in gaps if abs(a - b) >= 2 * self._spec.tick]
        if wide:
            a, b = self._rng.choice(wide)
            ticks = int(abs(a - b) / self._spec.tick)
            offset = self._rng.randint(1, ticks - 1) * self._spec.tick
            levels[a - offset if side == "bid" else a + offset] = self._draw_qty(index)

    def _draw_qty(self, index: int) -> Decimal:
        spec = self._spec
        qty = math.exp(self._rng.uniform(math.log(spec.min_qty), math.log(spec.max_qty)))
        qty *= 1.0 + _SIZE_GROWTH_PER_LEVEL * index
        return Decimal(max(1, round(qty / float(spec.step)))) * spec.step
