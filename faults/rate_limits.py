"""Scenario 9, rate limits: a burst of orders against 429s with Retry-After and the venue's own limits.

smartroute's Binance trading client (`BinanceConnector`: its `RateLimiter` paces by the limits
the venue publishes and honours `Retry-After`) places N orders, up to 100 in flight at once,
against the fake Binance REST server (`tests/integration/fake_binance.py`), which enforces the
real rules: request weight per minute and orders per 10 s, each with a 429 and `Retry-After`
when exceeded, and a 418 (an IP ban) for any request that arrives before a `Retry-After` has
passed. Time is a `VirtualClock` shared by the fake and the limiter, so windows pass without
sleeping. Two throttles the client cannot foresee are added: a seeded 1 % of the orders are
answered 429 (Retry-After 7 s) whatever the counts, and once a third of the orders are accepted
the venue halves its order limit without saying so (the client learns it only from 429 -1015).

Then the same number of orders at Bybit, one after another (`BybitTrading`, whose throttles
pace by the per-endpoint limit, 20 orders a second, and by what `X-Bapi-Limit-Status` and
`X-Bapi-Limit-Reset-Timestamp` report), against the fake Bybit, with a seeded 1 % of them
answered retCode 10006 (the endpoint held until its reset) or HTTP 429 (every request held a
second); the fake logs as a violation any request into such a hold or over 20 in a second.

Binance figures: requests the fake received during a Retry-After that were not already on their
way when its 429 was answered (0, hard: the fake's violations, each earning a ban; an order the
client sent before it read the 429, written down in order by `watching`, gets a 429 instead);
418 bans (0, hard); orders sent during a Retry-After the client had read, counted from the
answers' headers, not the limiter's state (0, hard); then measured: orders accepted, refused
by a 429 and of those sent before the 429 was read, virtual seconds the burst took, wall seconds.
Bybit figures: the fake's violations (0, hard), 403 bans (0, hard); orders accepted, refused,
virtual and wall time.
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
from connectors.bybit.signing import BybitCredentials
from connectors.bybit.trading import BybitTrading
from connectors.errors import RateLimited as VenueRateLimited
from connectors.errors import VenueBanned as VenueIpBanned
from connectors.trading import venue_client_order_id
from connectors.types import Side
from faults.fakes import fake
from faults.scenario import Context, Figure, Outcome, Scenario, measured, zero

IN_FLIGHT: Final = 100
INJECTED_SHARE: Final = 0.01
_NO_WAIT_LIMIT_S: Final = 1e9  # an order of the burst waits for its turn however long the queue
_SIDES: Final[tuple[tuple[Side, Decimal], ...]] = (("buy", Decimal("3000.1")), ("sell", Decimal("2999.9")))
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
                "Binance: requests the venue got during a Retry-After, not on their way at its 429",
                len(venue.violations),
            ),
            zero("bans", "Binance: 418 bans (IP banned)", venue.statuses[418]),
            zero("sent_early", "Binance: orders sent during a Retry-After it had read", len(limiter.early)),
            measured("accepted", "Binance: orders accepted", outcomes["accepted"]),
            measured("refused_429", "Binance: orders refused by a 429", outcomes["refused_429"]),
            measured("in_flight_at_a_429", "of which sent before the client read the 429", venue.excused),
            measured("virtual_s", "Binance: time the burst took, venue's clock", round(virtual_s, 1), "s"),
            measured("wall_s", "Binance: wall time", round(wall_s, 1), "s"),
        ]
    bybit_figures, details["bybit"] = await bybit_stream(count, rng)
    figures[3:3] = bybit_figures[:2]  # the hard figures together, then what was measured
    figures.extend(bybit_figures[2:])
    return Outcome(figures, size={"orders": count, "in_flight": IN_FLIGHT}, details=details)


async def bybit_stream(count: int, rng: random.Random) -> tuple[list[Figure], dict[str, Any]]:
    """Bybit: orders one after another under its per-endpoint limit, with seeded 10006s and 429s.

    Bybit's own throttling: 20 orders a second on `/v5/order/create` (reported on every answer),
    retCode 10006 blocking the endpoint until the reset it names, an HTTP 429 holding every
    request for a second, and any request sent into one of those a `violation` of the fake's.
    """
    fake_bybit = fake("fake_bybit")
    clock = fake_bybit.VirtualClock()
    outcomes = {"accepted": 0, "refused": 0, "banned": 0}
    async with fake_bybit.FakeBybit(clock=clock) as venue:
        client = BybitTrading(
            BybitCredentials(fake_bybit.API_KEY, fake_bybit.API_SECRET), ["ETH-USDT"],
            rest_url=venue.rest_url, wall_ms=clock.wall_ms, monotonic=clock, sleep=clock.sleep,
            request_timeout_s=30.0, order_max_wait_s=_NO_WAIT_LIMIT_S, max_wait_s=_NO_WAIT_LIMIT_S,
        )  # fmt: skip
        started, wall = clock(), time.monotonic()
        async with client:
            for index in range(count):
                draw = rng.random()
                if draw < INJECTED_SHARE:
                    venue.inject("POST", "/v5/order/create", "10006" if draw < INJECTED_SHARE / 2 else "429")
                side, price = _SIDES[index % 2]  # buy, sell, buy, ...: the balances stay where they were
                client_order_id = venue_client_order_id(f"burst-{index}", 0, "hex32")
                try:
                    await client.place_order("ETH-USDT", side, Decimal("0.002"), price, client_order_id)
                except VenueRateLimited:
                    outcomes["refused"] += 1
                except VenueIpBanned:
                    outcomes["banned"] += 1
                else:
                    outcomes["accepted"] += 1
        virtual_s, wall_s = clock() - started, time.monotonic() - wall
        details = {"violations": venue.violations[:50], "outcomes": outcomes,
                   "executed_twice": sorted(k for k, n in venue.executed.items() if n > 1)}  # fmt: skip
        figures = [
            zero(
                "bybit_violations",
                "Bybit: requests into a 10006 reset, a 429 second or over the limit",
                len(venue.violations),
            ),
            zero("bybit_bans", "Bybit: 403 bans", outcomes["banned"]),
            measured("bybit_accepted", "Bybit: orders accepted", outcomes["accepted"]),
            measured("bybit_refused", "Bybit: orders refused by a 10006 or a 429", outcomes["refused"]),
            measured(
                "bybit_virtual_s",
                "Bybit: time the orders took on the venue's clock",
                round(virtual_s, 1),
                "s",
            ),
            measured("bybit_wall_s", "Bybit: wall time", round(wall_s, 1), "s"),
        ]
    return figures, details


SCENARIO: Final = Scenario(
    9,
    "rate_limits",
    "Rate limits",
    run_scenario,
    lambda context: 120.0 if context.small else 1800.0,
)
