"""Start once, close always: the lifecycle the signed trading clients share.

A client opens lazily (the first call that needs the venue starts it) or
explicitly (`start()`, `async with`). Concurrent first calls wait for one
start; a start that fails closes what it opened and leaves the client
unstarted, so the next call tries again from scratch. `close()` is idempotent.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Self

__all__ = ["StartOnce"]


class StartOnce(ABC):
    """Base of a venue client: `_open()` runs once per start, `_shut()` on close or a failed start."""

    def __init__(self) -> None:
        self._started = False
        self._start_lock = asyncio.Lock()

    @abstractmethod
    async def _open(self) -> None:
        """Do what the client needs before its first order (clock offset, trading rules)."""

    @abstractmethod
    async def _shut(self) -> None:
        """Release the transport (the HTTP session)."""

    @abstractmethod
    def _log_started(self) -> None:
        """Log that the client is ready, with the facts an operator wants to see."""

    async def start(self) -> None:
        """Open the client once; idempotent, and safe to call from concurrent tasks."""
        async with self._start_lock:
            if self._started:
                return
            try:
                await self._open()
            except BaseException:
                await self._shut()
                raise
            self._started = True
        self._log_started()

    async def close(self) -> None:
        """Close the transport; idempotent. A later call starts the client again."""
        self._started = False
        await self._shut()

    async def _ensure_started(self) -> None:
        if not self._started:
            await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
