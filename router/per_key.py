"""PerKey: work for one key runs one piece after another; work for different keys runs at once.

The router answers the deliveries of one request_id this way (`router.smart`):
a duplicate that arrives while the first delivery is still executing waits for
it, then finds the first one's stored result — it never takes the first one's
open claim for one a crash left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class PerKey:
    """Run coroutines one at a time per key, in the order they arrive."""

    def __init__(self) -> None:
        """Start with no key busy."""
        self._running: dict[str, asyncio.Event] = {}

    def busy(self, key: str) -> bool:
        """Tell whether work for `key` is running now."""
        return key in self._running

    async def run(self, key: str | None, work: Coroutine[Any, Any, T]) -> T:
        """Await `work` once no other work for `key` runs; None: no key, run at once."""
        if key is None:
            return await work
        try:
            while (running := self._running.get(key)) is not None:
                await running.wait()
        except BaseException:
            work.close()  # cancelled while waiting: it never started
            raise
        self._running[key] = running = asyncio.Event()
        try:
            return await work
        finally:
            del self._running[key]
            running.set()
