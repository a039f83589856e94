"""What the five fake venue REST servers share; each venue's protocol rules stay in its own file.

- `FakeServer`: the aiohttp lifecycle (`async with Fake(...) as fake:` serves on
  `fake.rest_url`, 127.0.0.1 on a free port), the `_closing` event a hanging handler waits
  on, and the late tasks (`_spawn_late`) cancelled on exit;
- `FaultsAndLog`: the injected-fault queue per (method, path) consumed in order
  (`inject`, `_next_fault`) and the request log (`requests`, `requests_to`);
- `VirtualClock` / `VirtualThrottle`: time that passes only when someone sleeps, and the
  client's `Throttle` on it telling the clock what it lets through;
- `parse_book`: the price levels a test sets, as Decimals.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any, Generic, Protocol, Self, TypeVar

from aiohttp import web

from connectors.rest import Throttle

Levels = list[tuple[Decimal, Decimal]]
Book = tuple[Levels, Levels]


def parse_book(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> Book:
    """Return the (price, size) levels of both sides as Decimals."""
    return [(Decimal(p), Decimal(q)) for p, q in bids], [(Decimal(p), Decimal(q)) for p, q in asks]


class FakeServer:
    """An aiohttp server on 127.0.0.1:0; subclasses add their routes in `_routes`."""

    def __init__(self) -> None:
        self._closing = asyncio.Event()
        self._late: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application()
        self._routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._closing.set()
        for task in list(self._late):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn_late(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` after the answer (a late execution); it is cancelled when the server stops."""
        self._late.add(task := asyncio.create_task(work))
        task.add_done_callback(self._late.discard)


class SeenRequest(Protocol):
    """What the request log filters on."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...


F = TypeVar("F", bound=str)
S = TypeVar("S", bound=SeenRequest)


class FaultsAndLog(Generic[F, S]):
    """Faults injected per (method, path) and the request log."""

    def __init__(self) -> None:
        self.faults: dict[tuple[str, str], deque[F]] = {}
        self.requests: list[S] = []

    def inject(self, method: str, path: str, *faults: F) -> None:
        """Make the next requests to `method path` fail as `faults`, in order."""
        self.faults.setdefault((method, path), deque()).extend(faults)

    def _next_fault(self, method: str, path: str) -> F | None:
        queue = self.faults.get((method, path))
        return queue.popleft() if queue else None

    def requests_to(self, method: str, path: str) -> list[S]:
        return [seen for seen in self.requests if (seen.method, seen.path) == (method, path)]


class VirtualClock:
    """Seconds that pass only when someone sleeps; concurrent sleepers overlap, as in real time.

    Time never jumps while a request the limiter let through is still on its way to the fake
    (`sent` − `arrived`), so each request lands in the window it was sent in.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.in_flight = 0
        self._drained = asyncio.Event()
        self._drained.set()

    def __call__(self) -> float:
        return self.now

    def sent(self) -> None:
        self.in_flight += 1
        self._drained.clear()

    def arrived(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if not self.in_flight:
            self._drained.set()

    async def sleep(self, seconds: float) -> None:
        target = self.now + max(0.0, seconds)
        async with asyncio.timeout(5):
            await self._drained.wait()  # real time, for loopback I/O only
        self.now = max(self.now, target)
        await asyncio.sleep(0)


def arrived(clock: object) -> None:
    """Tell a VirtualClock a request reached the fake (any other clock needs no telling)."""
    if isinstance(clock, VirtualClock):
        clock.arrived()


class VirtualThrottle(Throttle):
    """The client's throttle on a VirtualClock, telling the clock what it lets through."""

    def __init__(self, clock: VirtualClock, venue: str) -> None:
        super().__init__(venue, clock=clock, sleep=clock.sleep)
        self.virtual = clock

    async def acquire(self, name: str | None = None, cost: float = 1.0, *, max_wait_s: float) -> None:
        await super().acquire(name, cost, max_wait_s=max_wait_s)
        self.virtual.sent()
