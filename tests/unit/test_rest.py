"""The REST plumbing every live venue shares: transport errors mapped by what they prove, and the throttle."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from connectors.errors import (
    OutcomeUnknown,
    RateLimited,
    VenueBanned,
    VenueConnectionError,
    VenueUnreachable,
)
from connectors.rest import RestSession, Throttle, VenueClock


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _throttle(time_: FakeTime) -> Throttle:
    return Throttle("okx", clock=time_.clock, sleep=time_.sleep, headroom=1.0)


async def test_a_budget_holds_requests_back_until_they_fit() -> None:
    time_ = FakeTime()
    throttle = _throttle(time_)
    throttle.budget("orders", capacity=3, per_s=1.5)  # 3 per 2 s
    for _ in range(3):
        await throttle.acquire("orders", max_wait_s=5)
    assert time_.slept == []
    await throttle.acquire("orders", max_wait_s=5)
    assert time_.slept == [pytest.approx(2 / 3)]


async def test_a_budget_wait_ends_on_a_clock_too_coarse_for_float_drift() -> None:
    time_ = FakeTime()
    time_.now = 1.8e9  # epoch seconds: float steps here are ~2e-7 s
    throttle = _throttle(time_)
    throttle.budget("rest", capacity=15, per_s=0.33)
    for _ in range(20):
        await throttle.acquire("rest", max_wait_s=10)
    assert len(time_.slept) == 5 and all(wait == pytest.approx(1 / 0.33) for wait in time_.slept)


async def test_a_wait_longer_than_allowed_is_refused_unsent() -> None:
    time_ = FakeTime()
    throttle = _throttle(time_)
    throttle.back_off(30, reason="429")
    with pytest.raises(RateLimited) as raised:
        await throttle.acquire(max_wait_s=2)
    assert raised.value.retry_after_s == pytest.approx(30)
    assert time_.slept == []


async def test_nothing_is_sent_before_a_back_off_ends() -> None:
    time_ = FakeTime()
    throttle = _throttle(time_)
    throttle.back_off(1.5, reason="throttled")
    await throttle.acquire(max_wait_s=5)
    assert time_.slept == [pytest.approx(1.5)]


async def test_the_venues_own_count_at_zero_waits_for_its_reset() -> None:
    time_ = FakeTime()
    throttle = _throttle(time_)
    throttle.report(remaining=5, reset_at_s=time_.now + 10)
    await throttle.acquire(max_wait_s=1)
    throttle.report(remaining=0, reset_at_s=time_.now + 0.8)
    await throttle.acquire(max_wait_s=1)
    assert time_.slept == [pytest.approx(0.8)]


async def test_during_a_ban_every_request_is_refused_and_none_waits() -> None:
    time_ = FakeTime()
    throttle = _throttle(time_)
    throttle.ban(600, reason="403")
    with pytest.raises(VenueBanned):
        await throttle.acquire(max_wait_s=1000)
    assert time_.slept == []
    time_.now += 601
    await throttle.acquire(max_wait_s=1)
    assert throttle.banned_until is None


async def test_the_clock_offset_is_the_server_time_at_the_round_trips_midpoint() -> None:
    wall = iter([1000.0, 1100.0])
    clock = VenueClock("kraken", wall_ms=lambda: next(wall, 1100.0))

    async def server_time() -> float:
        return 5050.0

    assert await clock.sync(server_time, reason="start") == pytest.approx(4000.0)
    assert clock.now_ms() == 5100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)  # well past the client's 0.3 s timeout
        return web.Response(text="late")

    async def drop(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    async def teapot(request: web.Request) -> web.Response:
        return web.json_response({"code": "x"}, status=418, headers={"Retry-After": "7"})

    app = web.Application()
    app.router.add_post("/slow", slow)
    app.router.add_post("/drop", drop)
    app.router.add_get("/status", teapot)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_an_order_without_an_answer_has_an_unknown_outcome(server: str) -> None:
    session = RestSession("bybit", server, timeout_s=0.3)
    try:
        with pytest.raises(OutcomeUnknown, match="no answer in time"):
            await session.request("POST", "/slow", action="place order", may_execute=True)
        with pytest.raises(OutcomeUnknown, match="connection failed"):
            await session.request("POST", "/drop", action="place order", may_execute=True)
        with pytest.raises(VenueConnectionError) as raised:
            await session.request("POST", "/drop", action="read balances")
        assert not isinstance(raised.value, OutcomeUnknown)
    finally:
        await session.close()


async def test_any_answer_is_returned_with_lower_case_headers(server: str) -> None:
    session = RestSession("bybit", server)
    try:
        response = await session.request("GET", "/status", action="read")
    finally:
        await session.close()
    assert response.status == 418 and response.headers["retry-after"] == "7"


async def test_no_connection_proves_nothing_was_sent() -> None:
    session = RestSession("kraken", f"http://127.0.0.1:{_free_port()}")
    try:
        with pytest.raises(VenueUnreachable, match="nothing was sent"):
            await session.request("POST", "/0/private/AddOrder", action="place order", may_execute=True)
    finally:
        await session.close()
