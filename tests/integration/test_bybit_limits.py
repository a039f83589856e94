"""BybitTrading under clock rejections, rate limits, bans, and with canary secrets (fake_bybit.py).

Time runs on the fake's VirtualClock for the fake, the client's venue clock,
its throttles and its pauses: "no request before the reset" is checked on the
fake's own record (`violations`, request times), never by sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from fake_bybit import FakeBybit, VirtualClock
from structlog.testing import capture_logs
from venue_helpers import bybit_client as connect
from venue_helpers import metric

from connectors.bybit.signing import BybitCredentials
from connectors.errors import OutcomeUnknown, RateLimited, VenueBanned, VenueError, VenueRejected
from connectors.rest_metrics import init_rest_metrics
from connectors.trading import venue_client_order_id

pytestmark = pytest.mark.integration

D = Decimal
CREATE = ("POST", "/v5/order/create")


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def fake(clock: VirtualClock) -> AsyncIterator[FakeBybit]:
    async with FakeBybit(clock=clock) as server:
        yield server


def cid(n: int | str) -> str:
    return venue_client_order_id(f"limits-{n}", 0, "hex32")


def paths(fake: FakeBybit) -> list[str]:
    return [f"{seen.method} {seen.path}" for seen in fake.requests]


# --- 10002: settled by query, sent again only once no copy can be accepted --------------------


async def test_a_stale_timestamp_is_settled_by_query_then_the_order_is_sent_once_more(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    before = metric("smartroute_clock_syncs_total", venue="bybit", reason="rejected")
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        fake.skew_ms = 20_000  # the venue's clock jumps ahead: our timestamps are 20 s old
        start = len(fake.requests)
        report = await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(1))
    assert paths(fake)[start:] == [
        "POST /v5/order/create",  # refused with 10002, not executed
        "GET /v5/market/time",  # the clock, measured again once
        "GET /v5/order/realtime",  # not there ...
        "GET /v5/order/history",  # ... nor there, and its window closed 14 s ago
        "POST /v5/order/create",  # so it goes once more, on the corrected clock
        "GET /v5/order/realtime",
    ]
    assert report.status == "Filled" and fake.executed == {cid(1): 1}
    assert metric("smartroute_clock_syncs_total", venue="bybit", reason="rejected") == before + 1


async def test_a_refusal_while_a_copy_could_still_be_accepted_is_never_sent_again(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        fake.skew_ms = -3_000  # our timestamp runs 3 s ahead: acceptable only in 2 s .. 8 s from now
        refused_at = clock()
        report = await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(2))
    first, second = fake.requests_to(*CREATE)
    # Settled by query along the schedule (five pauses, 7.7 s), then once more when the window
    # closed — the schedule ran out first — and only then sent again: never while a copy could be
    # accepted, never left unknown (it was, until the fault suite's clock-skew scenario).
    assert second.time - refused_at >= 8
    assert int(second.headers["X-BAPI-TIMESTAMP"]) > int(first.headers["X-BAPI-TIMESTAMP"])
    assert len(fake.requests_to("GET", "/v5/order/realtime")) >= 7
    assert report.status == "Filled" and fake.executed == {cid(2): 1}


async def test_the_order_goes_again_once_its_window_closes_during_the_settlement(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        fake.skew_ms = -1_500  # the refused request could be taken until 7.5 s from now
        refused_at = clock()
        report = await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(3))
    first, second = fake.requests_to(*CREATE)
    assert second.time - refused_at >= 7.5 and int(second.headers["X-BAPI-TIMESTAMP"]) > int(
        first.headers["X-BAPI-TIMESTAMP"]
    )
    assert report.status == "Filled" and fake.executed == {cid(3): 1}


async def test_a_refused_order_whose_clock_cannot_be_measured_again_is_unknown_not_rejected(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        fake.skew_ms = 20_000
        fake.inject("GET", "/v5/market/time", "fail_5xx")
        with pytest.raises(OutcomeUnknown, match="settle it by query"):
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(9))
    assert len(fake.requests_to(*CREATE)) == 1 and fake.executed == {}


async def test_a_read_refused_for_its_timestamp_is_sent_again_after_one_resync(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        fake.skew_ms = 20_000
        balances = await bybit.balances()
    assert balances["USDT"].free == D(200_000)
    assert len(fake.requests_to("GET", "/v5/account/wallet-balance")) == 2


# --- rate limits and bans -----------------------------------------------------------------------


async def test_10006_holds_that_endpoint_until_the_reset_and_nothing_is_sent_before(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(4))
        fake.inject("GET", "/v5/order/realtime", "10006")
        limited_at = clock()
        with pytest.raises(RateLimited) as caught:
            await bybit.query_order("BTC-USDT", cid(4))
        await bybit.balances()  # another endpoint: not held
        report = await bybit.query_order("BTC-USDT", cid(4))
    assert caught.value.retry_after_s == pytest.approx(2.0)
    [balance] = fake.requests_to("GET", "/v5/account/wallet-balance")
    assert balance.time == limited_at
    assert fake.requests_to("GET", "/v5/order/realtime")[-1].time >= limited_at + 2.0
    assert report.status == "Filled" and fake.violations == []


async def test_a_403_bans_this_ip_and_nothing_is_sent_for_ten_minutes(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    init_rest_metrics("bybit")
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        fake.inject("GET", "/v5/account/wallet-balance", "403")
        with pytest.raises(VenueBanned) as caught:
            await bybit.balances()
        sent = len(fake.requests)
        assert metric("smartroute_venue_banned", venue="bybit") == 1
        with pytest.raises(VenueBanned, match="not sent"):
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(5))
        with pytest.raises(VenueBanned, match="not sent"):
            await bybit.query_order("BTC-USDT", cid(5))
        assert len(fake.requests) == sent  # nothing left the process during the ban
        await clock.sleep(600)
        report = await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(5))
    assert caught.value.until_s == pytest.approx(clock(), abs=1)  # the ban ran from the 403 for 600 s
    assert report.status == "Filled" and fake.violations == [] and fake.executed == {cid(5): 1}
    assert metric("smartroute_venue_banned", venue="bybit") == 0


async def test_a_429_holds_every_request_for_a_second(fake: FakeBybit, clock: VirtualClock) -> None:
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        fake.inject("GET", "/v5/account/fee-rate", "429")
        limited_at = clock()
        with pytest.raises(RateLimited):
            await bybit.taker_fee_bps("BTC-USDT")
        await bybit.balances()
    assert fake.requests_to("GET", "/v5/account/wallet-balance")[0].time >= limited_at + 1.0
    assert fake.violations == []


async def test_the_limit_the_venue_reports_paces_requests_below_the_documented_one(
    clock: VirtualClock,
) -> None:
    limits = {"/v5/account/fee-rate": 2}  # this account gets 2/s, not the documented 5/s
    async with (
        asyncio.timeout(10),
        FakeBybit(clock=clock, limits=limits) as fake,
        connect(fake, clock) as bybit,
    ):
        started = clock()
        fees = [await bybit.taker_fee_bps("BTC-USDT") for _ in range(8)]
    assert fees == [D(10)] * 8 and fake.violations == []
    assert clock() - started >= 3.0  # 8 requests at 2 a second


async def test_a_burst_of_orders_is_paced_under_the_documented_order_limit(clock: VirtualClock) -> None:
    async with asyncio.timeout(20), FakeBybit(clock=clock) as fake, connect(fake, clock) as bybit:
        reports = [
            await bybit.place_order("ETH-USDT", "buy", D("0.01"), D("3000.1"), cid(f"b{n}"))
            for n in range(30)
        ]
    assert [r.status for r in reports] == ["Filled"] * 30 and fake.violations == []
    assert max(fake.executed.values()) == 1 and len(fake.executed) == 30


async def test_a_reset_a_millisecond_away_by_our_clock_is_read_as_now_and_the_second_is_waited(
    clock: VirtualClock,
) -> None:
    # Below the limit Bybit's reset timestamp is "now"; our estimate of its clock runs 1 ms behind
    # it here, so "now" reads as 1 ms away. Waiting that 1 ms sent a 21st order within the second
    # (fault scenario 9: 183 over-limit requests in 10,000).
    async with asyncio.timeout(20), FakeBybit(clock=clock) as fake, connect(fake, clock) as bybit:
        fake.skew_ms = 1
        reports = [
            await bybit.place_order("ETH-USDT", "buy", D("0.01"), D("3000.1"), cid(f"r{n}"))
            for n in range(45)
        ]
    assert [r.status for r in reports] == ["Filled"] * 45
    assert fake.violations == []


async def test_an_order_never_waits_longer_than_its_budget_for_a_turn(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10), connect(fake, clock, order_max_wait_s=0.5) as bybit:
        fake.inject("POST", "/v5/order/create", "10006")
        with pytest.raises(RateLimited):
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(6))
        with pytest.raises(RateLimited, match="not sent"):
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(7))
    assert len(fake.requests_to(*CREATE)) == 1 and fake.executed == {} and fake.violations == []


# --- secrets ------------------------------------------------------------------------------------


async def test_canary_credentials_never_reach_logs_errors_or_reprs(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    key, secret = "canary-key-5e1f0a", "canary-secret-77c3d9"
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    with capture_logs() as logs:
        async with asyncio.timeout(20), FakeBybit(clock=clock, api_key=key, api_secret=secret) as fake:
            bybit = connect(fake, clock, credentials=BybitCredentials(key, secret), request_timeout_s=0.5)
            async with bybit:
                await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(8))
                for fault in ("accept_then_5xx", "accept_then_hang", "accept_then_170146", "drop", "403"):
                    fake.inject(*CREATE, fault)  # type: ignore[arg-type]
                    try:
                        await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(fault))
                    except VenueError as exc:
                        errors.append(exc)
            wrong = connect(fake, clock, credentials=BybitCredentials(key, "canary-wrong-0b9e"))
            await clock.sleep(600)
            async with wrong:
                with pytest.raises(VenueRejected) as refused:
                    await wrong.balances()
            errors.append(refused.value)
    assert len(errors) == 6
    texts = [str(event) for event in logs] + [caplog.text, repr(bybit), repr(wrong), repr(bybit.rest)]
    for error in errors:
        current: BaseException | None = error
        while current is not None:
            texts += [str(current), repr(current), repr(current.args)]
            current = current.__cause__ or current.__context__
    leaks = [text for text in texts if "canary" in text or any(s in text for s in fake.signatures)]
    assert leaks == []
