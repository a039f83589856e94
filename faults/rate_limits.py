"""Scenario 9, rate limits: a burst of orders against 429s with Retry-After and the venue's own limits.

smartroute's Binance trading client (`BinanceConnector`: its `RateLimiter` paces by the limits
the venue publishes and honours `Retry-After`) places N orders, up to 100 in flight at once,
against the fake Binance REST server (`tests/integration/fake_binance.py`), which enforces the
real rules: request weight per minute and orders per 10 s, each with a 429 and `Retry-After`
when exceeded, and a 418 (an IP ban) for any request that arrives before a `Retry-After` has
passed. Time is a `VirtualClock` shared by the fake and the limiter, so windows pass without
sleeping. Two throttles the client cannot foresee are added: a seeded 1 % of the orders are
answered 429 (Retry-After 7 s) whatever the counts, and once a third of the orders are accepted the venue
halves its order limit without saying so (the client learns it only from 429 -1015).

Figures: requests the fake received before a Retry-After had passed (0, hard: each is a
violation the fake logs, and earns a ban); 418 bans (0, hard); then measured: orders accepted,
orders refused by a 429, virtual seconds the burst took, wall seconds.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
from decimal import Decimal
from typing import Any, Final

from connectors.binance.errors import RateLimited, VenueBanned
from connectors.binance.rest import BinanceConnector
from connectors.binance.session import ApiCredentials
from faults.fakes import fake
from faults.scenario import Context, Outcome, Scenario, measured, zero

IN_FLIGHT: Final = 100
INJECTED_SHARE: Final = 0.01
_NO_WAIT_LIMIT_S: Final = 1e9  # an order of the burst waits for its turn however long the queue
ORDER: Final = contextvars.ContextVar("ORDER", default="")  # the client order id a task is placing


def watching(limiter_class: Any) -> Any:
    """The limiter class, also writing down, in order, when each order was sent and each 429 read.

    Independent of the product's own bookkeeping: from the answers' headers it also counts the
    orders sent while a Retry-After the client had already read was still running (`early`).
    """

    class Watching(limiter_class):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.events = 0
            self.sent_at: dict[str, int] = {}
            self.read_429_at: dict[str, int] = {}
            self.retry_until = 0.0
            self.early: list[str] = []

        async def acquire(self, weight: int, *, orders: int = 0, max_wait_s: float) -> None:
            await super().acquire(weight, orders=orders, max_wait_s=max_wait_s)
            self.events += 1
            self.sent_at[ORDER.get()] = self.events
            if self.clock() < self.retry_until:
                self.early.append(ORDER.get())

        def observe(self, status: int, headers: Any) -> None:
            super().observe(status, headers)
            self.events += 1
            if status == 429:
                self.read_429_at.setdefault(ORDER.get(), self.events)
                retry = float(dict(headers).get("Retry-After", "0"))
                self.retry_until = max(self.retry_until, self.clock() + retry)

        def sent_before_reading(self, cause: str, request: str) -> bool:
            """Whether `request` left before the client read the 429 answered to `cause`."""
            read = self.read_429_at.get(cause)
            return read is None or self.sent_at.get(request, self.events + 1) < read

    return Watching


async def run_scenario(context: Context) -> Outcome:
    """Place the burst, count what the fake saw; return the figures."""
    count = 300 if context.small else 10_000
    rng = random.Random(context.seed)
    fake_binance, fake_venue = fake("fake_binance"), fake("fake_venue")
    clock = fake_venue.VirtualClock()
    limiter = watching(fake_binance.VirtualLimiter)(clock, "fault-rate-limits")
    outcomes: dict[str, int] = {"accepted": 0, "refused_429": 0, "banned": 0}
    async with fake_binance.FakeBinance(
        clock=clock, retry_after_s=7, excuse=limiter.sent_before_reading
    ) as venue:
        connector = BinanceConnector(
            rest_url=venue.rest_url,
            credentials=ApiCredentials(fake_binance.API_KEY, fake_binance.API_SECRET),
            request_timeout_s=30.0,
            max_wait_s=_NO_WAIT_LIMIT_S,
            order_max_wait_s=_NO_WAIT_LIMIT_S,
            limiter=limiter,
        )
        injected = sorted(rng.sample(range(count), max(1, int(count * INJECTED_SHARE))))
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def place(index: int) -> None:
            async with gate:
                ORDER.set(f"sr-burst-{index:05d}")
                try:
                    await connector.place_order(
                        "BTC-USDT", "buy", Decimal("0.001"), Decimal("64001"), ORDER.get()
                    )
                except RateLimited:
                    outcomes["refused_429"] += 1
                except VenueBanned:
                    outcomes["banned"] += 1
                else:
                    outcomes["accepted"] += 1
                    if outcomes["accepted"] == count // 3:
                        venue.orders_per_10s //= 2  # the venue tightens its limit without notice
                if index in injected_set:
                    venue.inject("POST", "order", "429")  # the next order is refused, whatever the counts

        injected_set = set(injected)
        async with connector:
            started, wall = clock(), time.monotonic()
            await asyncio.gather(*(place(i) for i in range(count)))
            virtual_s, wall_s = clock() - started, time.monotonic() - wall
        details: dict[str, Any] = {
            "violations": venue.violations[:50],
            "sent_early": limiter.early[:50],
            "statuses": {str(k): v for k, v in sorted(venue.statuses.items())},
            "outcomes": outcomes,
            "injected_429": len(injected),
            "in_flight_at_a_429": venue.excused,
            "orders_per_10s_at_end": venue.orders_per_10s,
            "requests": len(venue.requests),
            "duplicates": sorted(cid for cid, n in venue.accepted.items() if n > 1),
        }
        figures = [
            zero(
                "before_retry_after",
                "requests the venue got during a Retry-After, not on their way at its 429",
                len(venue.violations),
            ),
            zero("bans", "418 bans (IP banned)", venue.statuses[418]),
            zero(
                "sent_early", "orders sent while a Retry-After already read was running", len(limiter.early)
            ),
            measured("accepted", "orders accepted", outcomes["accepted"]),
            measured("refused_429", "orders refused by a 429", outcomes["refused_429"]),
            measured("in_flight_at_a_429", "of which sent before the client read the 429", venue.excused),
            measured("virtual_s", "time the burst took on the venue's clock", round(virtual_s, 1), "s"),
            measured("wall_s", "wall time", round(wall_s, 1), "s"),
        ]
    return Outcome(figures, size={"orders": count, "in_flight": IN_FLIGHT}, details=details)


SCENARIO: Final = Scenario(
    9,
    "rate_limits",
    "Rate limits",
    run_scenario,
    lambda context: 120.0 if context.small else 1800.0,
)
