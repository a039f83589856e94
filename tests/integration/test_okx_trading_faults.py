"""OkxTrading under faults (fake_okx.py): the acceptance window, late orders, throttling, bans, canaries.

`settle` below is the executor's rule, written out so the client can be held to it:
query the client order id until the venue answers, and believe "no such order" only
once `acceptance_window_ms` has passed since the send. Rate-limit time runs on a
virtual clock shared by the fake and the client's throttle.
"""

from __future__ import annotations

import asyncio
import io
import time
import traceback
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from fake_okx import FakeOkx, Fault
from fake_venue import VirtualClock, VirtualThrottle
from prometheus_client import REGISTRY, generate_latest
from venue_helpers import assert_banned_sends_nothing, metric, okx_client

from connectors.errors import OrderNotFound, OutcomeUnknown, RateLimited, VenueBanned, VenueError
from connectors.okx.signing import OkxCredentials
from connectors.okx.trading import OkxTrading
from connectors.rest_metrics import init_rest_metrics
from connectors.trading import OrderReport, venue_client_order_id

pytestmark = pytest.mark.integration

D = Decimal
CANARY_KEY = "CanaryOkxKey5d1e9a3f7b2c8e4a0d6f1b9c3e7a5d2f8b4c0e6a9d3f7b1c5e2a8d4f0b6c9e3a7"
CANARY_SECRET = "CanaryOkxSecret8e2a6c0f4b9d3e7a1c5f2b8d4e0a6c9f3b7d1e5a2c8f4b0d6e9a3c7f1b5d2"
CANARY_PASSPHRASE = "CanaryOkxPassphrase3f9b1d7e5a2c8f4b0d6e"
CANARY = OkxCredentials(CANARY_KEY, CANARY_SECRET, CANARY_PASSPHRASE)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOkx]:
    async with FakeOkx(api_key=CANARY_KEY, api_secret=CANARY_SECRET, passphrase=CANARY_PASSPHRASE) as server:
        yield server


def connect(fake: FakeOkx, **options: Any) -> OkxTrading:
    return okx_client(fake, CANARY, **options)


def cid(name: str) -> str:
    return venue_client_order_id(name, 0, "hex32")


async def settle(okx: OkxTrading, symbol: str, client_id: str, sent_at: float) -> OrderReport | None:
    """Query until the venue answers; "not found" counts only once the acceptance window has passed."""
    final_at = sent_at + okx.acceptance_window_ms / 1000
    while True:
        checked_at = time.monotonic()
        try:
            return await okx.query_order(symbol, client_id)
        except OrderNotFound:
            if checked_at >= final_at:
                return None
        await asyncio.sleep(0.02)  # a polling interval, not a wait for something to settle


# --- the acceptance window ------------------------------------------------------------------------


async def test_an_order_accepted_late_within_its_exp_time_is_found_by_querying_not_resending(
    fake: FakeOkx,
) -> None:
    fake.late_s = 0.3  # the engine takes the order 300 ms after answering 50004
    client_id = cid("late-in-window")
    fake.inject("POST", "trade/order", "accept_late")
    async with asyncio.timeout(10), connect(fake, order_deadline_ms=3000, visibility_margin_ms=500) as okx:
        sent_at = time.monotonic()
        with pytest.raises(OutcomeUnknown):
            await okx.place_order("BTC-USDT", "buy", D("0.5"), D("64001"), client_id)
        with pytest.raises(OrderNotFound):  # not yet: and inside the window, that is not final
            await okx.query_order("BTC-USDT", client_id)
        report = await settle(okx, "BTC-USDT", client_id, sent_at)
    assert report is not None and (report.status, report.executed_qty) == ("filled", D("0.5"))
    assert fake.executions == {client_id: 1} and len(fake.requests_to("POST", "trade/order")) == 1


async def test_an_order_the_engine_reaches_after_its_exp_time_never_executes_and_is_final_after_the_window(
    fake: FakeOkx,
) -> None:
    fake.late_s = 0.4  # later than the 200 ms deadline below
    client_id = cid("late-expired")
    fake.inject("POST", "trade/order", "accept_late")
    async with asyncio.timeout(10), connect(fake, order_deadline_ms=200, visibility_margin_ms=300) as okx:
        sent_at = time.monotonic()
        with pytest.raises(OutcomeUnknown):
            await okx.place_order("BTC-USDT", "buy", D("0.5"), D("64001"), client_id)
        report = await settle(okx, "BTC-USDT", client_id, sent_at)
        await asyncio.wait_for(fake.late_done.wait(), 5)
        with pytest.raises(OrderNotFound):  # and it stays so: expTime dropped it
            await okx.query_order("BTC-USDT", client_id)
    assert report is None and fake.expired_late == 1 and fake.executions == {}


async def test_an_order_slow_to_show_on_the_query_endpoint_is_found_within_the_window(fake: FakeOkx) -> None:
    client_id = cid("late-visible")
    fake.hide_new_orders(3)  # its first three queries answer 51603
    fake.inject("POST", "trade/order", "accept_then_drop")
    async with asyncio.timeout(10), connect(fake, order_deadline_ms=1000, visibility_margin_ms=1000) as okx:
        sent_at = time.monotonic()
        with pytest.raises(OutcomeUnknown):
            await okx.place_order("BTC-USDT", "buy", D("0.5"), D("64001"), client_id)
        report = await settle(okx, "BTC-USDT", client_id, sent_at)
    assert report is not None and report.executed_qty == D("0.5")
    assert len(fake.requests_to("GET", "trade/order")) == 4
    assert fake.executions == {client_id: 1} and len(fake.requests_to("POST", "trade/order")) == 1


async def test_an_acknowledged_order_whose_state_cannot_be_read_is_unknown_not_lost(fake: FakeOkx) -> None:
    client_id = cid("ack-unreadable")
    fake.hide_new_orders(1)  # the read by ordId right after the acknowledgement finds nothing yet
    async with asyncio.timeout(10), connect(fake) as okx:
        with pytest.raises(OutcomeUnknown, match="query it"):
            await okx.place_order("BTC-USDT", "buy", D("0.5"), D("64001"), client_id)
        report = await okx.query_order("BTC-USDT", client_id)
    assert report.executed_qty == D("0.5") and fake.executions == {client_id: 1}


async def test_an_order_whose_exp_time_passed_on_arrival_is_refused_and_resent_once_on_a_fresh_clock(
    fake: FakeOkx,
) -> None:
    async with asyncio.timeout(10), connect(fake, order_deadline_ms=1000) as okx:
        fake.skew_ms = 5_000  # the venue runs 5 s ahead: our expTime is already past (50036)
        report = await okx.place_order("BTC-USDT", "buy", D("0.5"), D("64001"), cid("exp-past"))
    [refused, accepted] = fake.requests_to("POST", "trade/order")
    assert int(accepted.headers["exptime"]) > int(refused.headers["exptime"]) + 4_000
    assert report.status == "filled" and fake.executions == {cid("exp-past"): 1}


async def test_a_burst_of_twenty_orders_under_every_fault_executes_each_at_most_once_and_settles_all(
    fake: FakeOkx,
) -> None:
    faults: list[Fault | None] = [
        None, "accept_then_hang", "accept_then_5xx", "accept_then_drop", "accept_then_50004",
        "accept_then_50001", "accept_then_50013", "accept_then_50026", "accept_late", "fail_50004",
        "fail_5xx", "drop",
    ]  # fmt: skip
    fake.inject("POST", "trade/order", *[f for f in (faults * 2)[:20] if f is not None])
    ids = [cid(f"burst-{i}") for i in range(20)]

    async def leg(client_id: str) -> OrderReport | None:
        sent_at = time.monotonic()
        try:
            return await okx.place_order("BTC-USDT", "buy", D("0.01"), D("64001"), client_id)
        except OutcomeUnknown:
            return await settle(okx, "BTC-USDT", client_id, sent_at)

    options = {
        "request_timeout_s": 0.5,
        "backoff_s": 0.0,
        "order_deadline_ms": 3000,
        "visibility_margin_ms": 500,
    }
    async with asyncio.timeout(30), connect(fake, **options) as okx:
        results = await asyncio.gather(*(leg(client_id) for client_id in ids))
        await asyncio.wait_for(fake.late_done.wait(), 5)
    assert len(fake.requests_to("POST", "trade/order")) == 20  # one send per leg, never a second
    assert max(fake.executions.values()) == 1
    settled = {r.client_order_id: r.executed_qty for r in results if r is not None}
    assert settled == {o.cl_ord_id: o.filled for o in fake.orders}  # the venue's orders are the results


# --- rate limits ----------------------------------------------------------------------------------


async def test_a_burst_is_paced_under_the_documented_budget_and_never_earns_a_50011() -> None:
    clock = VirtualClock(start=1000.0)  # small: at 1.8e9 a float cannot hold the sub-µs waits
    async with asyncio.timeout(20), FakeOkx(clock=clock, **canary_keys()) as fake:
        okx = connect(fake, throttle=VirtualThrottle(clock, "test-okx-burst"), max_wait_s=60.0)
        async with okx:
            started = clock()
            reports = await asyncio.gather(*(okx.query_order("BTC-USDT", cid("none")) for _ in range(100)),
                                           return_exceptions=True)  # fmt: skip
    assert all(isinstance(r, OrderNotFound) for r in reports)
    assert fake.statuses[429] == 0 and fake.violations == []
    assert clock() - started >= 4  # 100 queries at <= 60 per 2 s, bursts included: over 3 s at least
    assert metric("smartroute_rate_limit_waits_total", venue="test-okx-burst", reason="budget") > 0


@pytest.mark.parametrize("code", ["50011", "50061", "50040"])
async def test_a_throttling_code_is_rate_limited_and_nothing_is_sent_before_the_back_off_ends(
    code: str,
) -> None:
    clock = VirtualClock(start=1000.0)  # small: at 1.8e9 a float cannot hold the sub-µs waits
    async with asyncio.timeout(20), FakeOkx(clock=clock, backoff_s=3.0, **canary_keys()) as fake:
        okx = connect(fake, throttle=VirtualThrottle(clock, f"test-okx-{code}"), backoff_s=3.0)
        async with okx:
            fake.inject("POST", "trade/order", code)  # type: ignore[arg-type]
            with pytest.raises(RateLimited) as caught:
                await okx.place_order("BTC-USDT", "buy", D("0.5"), D("64001"), cid(f"throttled-{code}"))
            limited_at = clock()
            with pytest.raises(RateLimited, match="not sent"):  # an order does not wait 3 s for its turn
                await okx.place_order("BTC-USDT", "buy", D("0.5"), D("64001"), cid(f"waiting-{code}"))
            await asyncio.gather(okx.balances(), okx.query_order("BTC-USDT", cid(f"throttled-{code}")),
                                 return_exceptions=True)  # fmt: skip
    assert caught.value.retry_after_s == 3.0
    later = [seen.time for seen in fake.requests if seen.time > limited_at]
    assert len(later) == 2 and min(later) >= limited_at + 3.0
    assert fake.violations == [] and fake.executions == {}


async def test_an_account_block_stops_every_request_until_the_ban_ends() -> None:
    clock = VirtualClock(start=1000.0)  # small: at 1.8e9 a float cannot hold the sub-µs waits
    init_rest_metrics("test-okx-ban")
    async with asyncio.timeout(20), FakeOkx(clock=clock, ban_s=300, **canary_keys()) as fake:
        okx = connect(fake, throttle=VirtualThrottle(clock, "test-okx-ban"), ban_s=300)
        async with okx:
            fake.inject("GET", "account/balance", "ban")
            with pytest.raises(VenueBanned):
                await okx.balances()
            assert metric("smartroute_venue_banned", venue="test-okx-ban") == 1
            await assert_banned_sends_nothing(okx, fake.requests, "BTC-USDT", D("0.5"), cid("banned"))
            await clock.sleep(300)
            assert (await okx.balances())["USDT"].free == D(100000)
    assert metric("smartroute_venue_banned", venue="test-okx-ban") == 0
    assert fake.violations == [] and fake.executions == {}


async def test_a_busy_venue_holds_requests_back_for_one_back_off() -> None:
    clock = VirtualClock(start=1000.0)  # small: at 1.8e9 a float cannot hold the sub-µs waits
    async with asyncio.timeout(20), FakeOkx(clock=clock, **canary_keys()) as fake:
        okx = connect(fake, throttle=VirtualThrottle(clock, "test-okx-busy"), backoff_s=2.0)
        async with okx:
            fake.inject("POST", "trade/order", "accept_then_50013")
            with pytest.raises(OutcomeUnknown):
                await okx.place_order("BTC-USDT", "buy", D("0.5"), D("64001"), cid("busy"))
            busy_at = clock()
            report = await okx.query_order("BTC-USDT", cid("busy"))
    assert report.executed_qty == D("0.5") and fake.executions == {cid("busy"): 1}
    assert fake.requests_to("GET", "trade/order")[-1].time >= busy_at + 2.0


def canary_keys() -> dict[str, str]:
    return {"api_key": CANARY_KEY, "api_secret": CANARY_SECRET, "passphrase": CANARY_PASSPHRASE}


# --- secrets --------------------------------------------------------------------------------------


async def test_canary_credentials_appear_in_no_log_metric_exception_or_repr(
    fake: FakeOkx, captured_logs: io.StringIO
) -> None:
    texts: list[str] = []

    async def expect_failure(call: Any) -> None:
        try:
            await call()
        except VenueError as exc:
            texts.append("".join(traceback.format_exception(exc)) + repr(exc))
        else:
            pytest.fail("the call was expected to fail")

    async with asyncio.timeout(20), connect(fake, request_timeout_s=0.5, backoff_s=0.0) as okx:
        await okx.place_order("BTC-USDT", "buy", D("0.5"), D("64001"), cid("canary-ok"))
        for fault in ("accept_then_5xx", "accept_then_drop", "accept_then_hang", "accept_then_50004"):
            fake.inject("POST", "trade/order", fault)  # type: ignore[arg-type]
            await expect_failure(lambda: okx.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid("c")))
        fake.inject("GET", "trade/order", "fail_5xx", "fail_50004")
        await expect_failure(lambda: okx.query_order("BTC-USDT", cid("c")))
        await expect_failure(lambda: okx.query_order("BTC-USDT", cid("c")))
        fake.skew_ms = -40_000  # a 50102, then a resync
        await okx.balances()
        fake.skew_ms = 0
        wrong = OkxCredentials(CANARY_KEY, "wrong" + CANARY_SECRET, CANARY_PASSPHRASE)
        async with connect(fake, credentials=wrong) as bad:
            await expect_failure(bad.balances)
            texts.append(repr(bad))
        fake.inject("GET", "account/balance", "ban")
        await expect_failure(okx.balances)
        await expect_failure(okx.balances)  # refused locally during the ban
        texts += [repr(okx), str(okx), repr(okx.rest), repr(CANARY)]
    exposed = {
        "logs": captured_logs.getvalue(),
        "metrics": generate_latest(REGISTRY).decode(),
        "exceptions and reprs": "\n".join(texts),
    }
    assert fake.signatures and fake.statuses[401] >= 2  # the 50102 and the bad secret were exercised
    assert "okx_request_refused" in exposed["logs"] and "okx_order_acknowledged" in exposed["logs"]
    for where, text in exposed.items():
        for canary in (CANARY_KEY, CANARY_SECRET, CANARY_PASSPHRASE, *fake.signatures):
            assert canary not in text, f"{canary[:12]}… leaked into {where}"
