"""Counting what a client under test delivered, and how fast."""

from __future__ import annotations

import asyncio
import time


class Meter:
    """Count delivered messages; time the span from the first to the `target`-th.

    Every client under test calls `tick()` once per message it has fully
    handled, so the per-message cost of measuring is the same for all of them.
    """

    __slots__ = ("count", "done", "first_ns", "last_ns", "target")

    def __init__(self, target: int) -> None:
        """Measure until `target` messages (at least 2) were delivered."""
        if target < 2:
            raise ValueError(f"target must be >= 2, got {target}")
        self.target = target
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self.done = asyncio.Event()

    def tick(self) -> None:
        """Count one delivered message."""
        self.count += 1
        if self.count == 1:
            self.first_ns = time.perf_counter_ns()
        elif self.count == self.target:
            self.last_ns = time.perf_counter_ns()
            self.done.set()

    def result(self) -> dict[str, float]:
        """Return messages, seconds and messages per second between the first and the target-th message."""
        if not self.done.is_set():
            raise RuntimeError(f"only {self.count} of {self.target} messages were delivered")
        seconds = (self.last_ns - self.first_ns) / 1e9
        return {"messages": self.count, "seconds": seconds, "msgs_per_s": (self.target - 1) / seconds}
