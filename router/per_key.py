"""PerKey: work for one key runs one piece after another, in the order it came; other keys at once.

The router answers the deliveries of one request_id this way (`router.smart`):
a duplicate that arrives while the first delivery is still executing waits for
it, then finds the first one's stored result — it never takes the first one's
open claim for one a crash left. The router service runs the requests of one
Kafka key this way too (`daemon.in_flight`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class PerKey:
    """Run coroutines one at a time per key, strictly in the order `run` was called."""

    def __init__(self) -> None:
        """Start with no key busy."""
        self._tails: dict[str, asyncio.Future[None]] = {}  # per key: done when its last work is

    def busy(self, key: str) -> bool:
        """Tell whether work for `key` is running or waiting now."""
        return key in self._tails

    async def run(self, key: str | None, work: Coroutine[Any, Any, T]) -> T:
        """Await `work` after every earlier work for `key` ended; None: no key, run at once."""
        if key is None:
            return await work
        previous = self._tails.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = mine
        started = False
        try:
            if previous is not None:
                await asyncio.shield(previous)
            started = True
            return await work
        finally:
            if not started:
                work.close()  # cancelled while waiting: it never began
            if started or previous is None or previous.done():
                self._release(key, mine)
            else:  # the work after this one still waits for the one before it
                previous.add_done_callback(lambda _: self._release(key, mine))

    def _release(self, key: str, mine: asyncio.Future[None]) -> None:
        if not mine.done():
            mine.set_result(None)
        if self._tails.get(key) is mine:
            del self._tails[key]
