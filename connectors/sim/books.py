"""The books one simulated venue serves: per symbol its BBO and the depth behind it, plus pending faults.

Pure state, no I/O: `VenueBooks.publish` applies a new quote (or an evolution
tick) and returns what must be broadcast; the endpoint sends it. Faults that
act on "the next depth message" (a duplicate, a bad checksum) wait here until
that message is made.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from connectors.sim.depth import DepthEvent, SymbolDepth
from connectors.sim.market import BookTop, SimulatorError, SymbolSpec, spec_for
from connectors.sim.protocol import BookState

FIRST_UPDATE_ID: Final = 1_000_001


@dataclass(frozen=True, slots=True)
class Published:
    """What one change of a symbol's book sends: a BBO update, a depth event, and whether it goes twice."""

    state: BookState | None
    event: DepthEvent | None
    duplicate: bool = False


class VenueBooks:
    """BBO and depth of every symbol one venue serves."""

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        specs: Mapping[str, SymbolSpec],
        levels: int,
        rng: random.Random,
        view_depths: Iterable[int],
        clock_ms: Callable[[], int],
    ) -> None:
        self.bbo: dict[str, BookState] = {}
        self._depth = {
            s: SymbolDepth(s, specs.get(s) or spec_for(s), levels=levels, rng=rng, view_depths=view_depths)
            for s in symbols
        }
        self._clock_ms = clock_ms
        self._duplicate: set[str] = set()
        self._bad_checksum: set[str] = set()

    def depth(self, symbol: str) -> SymbolDepth:
        """Return the depth book of a simulated symbol."""
        try:
            return self._depth[symbol]
        except KeyError:
            raise SimulatorError(f"{symbol!r} is not simulated (symbols: {list(self._depth)})") from None

    def seed(self, symbol: str, top: BookTop) -> None:
        """Set the symbol's BBO and build its depth without sending anything (before anyone connects)."""
        now_ms = self._clock_ms()
        depth = self.depth(symbol)
        depth.update(top, evolve=False, now_ms=now_ms)
        self.bbo[symbol] = BookState(top, FIRST_UPDATE_ID, depth.last_id, now_ms)

    def publish(self, symbol: str, top: BookTop | None, *, evolve: bool = False) -> Published:
        """Apply a new BBO (if given) and, if `evolve`, a few inner-level moves; return what to send."""
        now_ms = self._clock_ms()
        depth = self.depth(symbol)
        event = depth.update(top, evolve=evolve, now_ms=now_ms)
        state = None
        if top is not None:
            previous = self.bbo.get(symbol)
            update_id = previous.update_id + 1 if previous else FIRST_UPDATE_ID
            # Bybit's `seq` orders data across depths: the BBO carries the id of the book it tops.
            state = self.bbo[symbol] = BookState(top, update_id, depth.last_id, now_ms)
        return self._with_faults(symbol, state, event)

    def nudge(self, symbol: str) -> DepthEvent:
        """Change an inner level of the symbol's book (the BBO stays), for a message that gets lost."""
        return self.depth(symbol).nudge(self._clock_ms())

    def crossed_top(self, symbol: str) -> BookTop:
        """Return the symbol's BBO with the bid lifted one tick above the ask: a book that cannot be true."""
        state = self.bbo.get(symbol)
        if state is None:
            raise SimulatorError(f"{symbol}: no quote yet to cross; push one first")
        top = state.top
        return dataclasses.replace(top, bid=top.ask + self.depth(symbol).tick)

    def queue_duplicate(self, symbol: str) -> None:
        """Send the symbol's next depth message twice."""
        self.depth(symbol)
        self._duplicate.add(symbol)

    def queue_bad_checksum(self, symbol: str) -> None:
        """Send the symbol's next depth message with a checksum that does not match its book."""
        self.depth(symbol)
        self._bad_checksum.add(symbol)

    def _with_faults(self, symbol: str, state: BookState | None, event: DepthEvent | None) -> Published:
        if event is None:
            return Published(state, None)
        if symbol in self._bad_checksum:
            self._bad_checksum.discard(symbol)
            event = dataclasses.replace(event, bad_checksum=True)
        duplicate = symbol in self._duplicate
        self._duplicate.discard(symbol)
        return Published(state, event, duplicate)
