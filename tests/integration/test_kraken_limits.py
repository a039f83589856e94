"""KrakenTrading under Kraken's rate limits and lockouts, and with canary credentials at DEBUG.

The fake Kraken (fake_kraken.py) keeps the documented counters and records any
request that arrives over a limit, while throttled or during a lockout; the
counters run on a virtual clock shared with the client's throttle.
"""

from __future__ import annotations

import asyncio
import base64
import io
import traceback
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from fake_kraken import FakeKraken
from fake_venue import VirtualClock, VirtualThrottle
from prometheus_client import REGISTRY, generate_latest
from venue_helpers import assert_banned_sends_nothing, metric

from connectors.errors import OutcomeUnknown, RateLimited, VenueBanned, VenueError
from connectors.kraken.private import Tier
from connectors.kraken.signing import KrakenCredentials
from connectors.kraken.trading import KrakenTrading
from connectors.rest_metrics import init_rest_metrics
from connectors.trading import venue_client_order_id

pytestmark = pytest.mark.integration

D = Decimal
STARTER = Tier(rest_capacity=15, rest_decay_per_s=0.33, order_capacity=60, order_decay_per_s=1.0)
CANARY_KEY = "CanaryKrakenKey7f3a9e1b5c2d8f4a6b0e9c3d7a1f5b2e8c4d0a6f9b3e7c1d5a2f8"
CANARY_SECRET = base64.b64encode(b"CanaryKrakenSecret-" + bytes(range(100, 145))).decode()


def cid(name: str) -> str:
    return venue_client_order_id(f"request-{name}", 0, "uuid36")


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=1000.0)  # small: at 1.8e9 a float cannot add the throttle's tiny waits


@pytest.fixture
async def fake(clock: VirtualClock) -> AsyncIterator[FakeKraken]:
    async with FakeKraken(clock=clock, api_key=CANARY_KEY, api_secret=CANARY_SECRET) as server:
        yield server


def connect(fake: FakeKraken, clock: VirtualClock, label: str, **options: Any) -> KrakenTrading:
    init_rest_metrics(label)
    options.setdefault("tier", Tier(20, 1.0, 180, 3.75))
    options.setdefault("credentials", KrakenCredentials(fake.api_key, fake.api_secret))
    options.setdefault("request_timeout_s", 2.0)
    return KrakenTrading(
        symbols=["BTC-USD", "BTC-USDT"],
        rest_url=fake.rest_url,
        throttle=VirtualThrottle(clock, label),
        **options,
    )


async def test_a_burst_is_paced_under_the_rest_counter_and_never_earns_a_rate_limit(
    clock: VirtualClock,
) -> None:
    async with asyncio.timeout(30), FakeKraken(clock=clock, rest_capacity=15, rest_decay_per_s=0.33) as fake:
        kraken = connect(fake, clock, "kraken-burst", tier=STARTER)
        await kraken.start()
        started = clock()
        answers = await asyncio.gather(*(kraken.balances() for _ in range(30)))
        await kraken.close()
    assert len(answers) == 30 and fake.violations == []
    assert clock() - started >= (30 - 15 * 0.9) / 0.33 - 1
    assert metric("smartroute_rate_limit_waits_total", venue="kraken-burst", reason="budget") > 0


async def test_nothing_is_sent_before_a_throttled_timestamp(fake: FakeKraken, clock: VirtualClock) -> None:
    fake.throttled_s = 5
    async with asyncio.timeout(30):
        kraken = connect(fake, clock, "kraken-throttled")
        await kraken.start()
        fake.inject("BalanceEx", "throttled")
        with pytest.raises(RateLimited) as caught:
            await kraken.balances()
        throttled_at = clock()
        with pytest.raises(RateLimited, match="not sent"):  # an order never waits 5 s for its turn
            await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("throttled"))
        await asyncio.gather(*(kraken.balances() for _ in range(3)), kraken.open_orders())
        await kraken.close()
    later = [seen.time for seen in fake.requests if seen.time > throttled_at]
    assert len(later) == 4 and min(later) >= throttled_at + 5
    assert caught.value.retry_after_s >= 5 and fake.violations == [] and fake.executions == {}


async def test_a_lockout_stops_every_request_until_it_ends(fake: FakeKraken, clock: VirtualClock) -> None:
    async with asyncio.timeout(30):
        kraken = connect(fake, clock, "kraken-ban")
        await kraken.start()
        fake.inject("BalanceEx", "lockout")
        with pytest.raises(VenueBanned):
            await kraken.balances()
        assert metric("smartroute_venue_banned", venue="kraken-ban") == 1
        await assert_banned_sends_nothing(kraken, fake.requests, "BTC-USD", D("0.1"), cid("banned"))
        await clock.sleep(900)
        assert "BTC" in await kraken.balances()
        await kraken.close()
    assert metric("smartroute_venue_banned", venue="kraken-ban") == 0
    assert fake.executions == {} and fake.violations == []


async def test_a_rest_rate_limit_holds_every_request_until_the_counter_has_decayed(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    async with asyncio.timeout(30):
        kraken = connect(fake, clock, "kraken-counter")
        await kraken.start()
        fake.inject("BalanceEx", "rate_limit")
        with pytest.raises(RateLimited) as caught:
            await kraken.balances()
        limited_at = clock()
        await kraken.balances()
        await kraken.close()
    assert caught.value.retry_after_s == 20  # a counter of 20 decaying at 1/s
    assert fake.requests[-1].time >= limited_at + 20 and fake.violations == []


async def test_an_order_rate_limit_holds_orders_on_that_pair_only(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    async with asyncio.timeout(30):
        kraken = connect(fake, clock, "kraken-pair")
        fake.inject("AddOrder", "order_rate_limit")
        with pytest.raises(RateLimited):
            await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("pair-limited"))
        with pytest.raises(RateLimited, match="not sent"):
            await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("pair-limited-2"))
        other = await kraken.place_order("BTC-USDT", "buy", D("0.01"), D("64002"), cid("other-pair"))
        await kraken.balances()
        await kraken.close()
    assert len(fake.requests_to("AddOrder")) == 2 and fake.executions == {cid("other-pair"): 1}
    assert other.status == "closed"


async def test_orders_are_paced_by_the_pairs_trading_counter_without_a_rate_limit(
    clock: VirtualClock,
) -> None:
    tier = Tier(rest_capacity=1000, rest_decay_per_s=100, order_capacity=5, order_decay_per_s=1.0)
    limits: dict[str, Any] = {"order_capacity": 5, "order_decay_per_s": 1.0, "rest_capacity": 1000}
    async with asyncio.timeout(30), FakeKraken(clock=clock, rest_decay_per_s=100, **limits) as fake:
        kraken = connect(fake, clock, "kraken-orders", tier=tier, order_max_wait_s=30.0)
        await kraken.start()
        started = clock()
        reports = await asyncio.gather(
            *(
                kraken.place_order("BTC-USD", "buy", D("0.01"), D("64001"), cid(f"paced-{i}"))
                for i in range(12)
            )
        )
        await kraken.close()
    assert [r.status for r in reports] == ["closed"] * 12 and fake.violations == []
    assert clock() - started >= 12 - 5 * 0.9 - 1


# --- canary credentials -----------------------------------------------------------------------------


async def test_canary_credentials_never_appear_in_logs_errors_reprs_or_metrics(
    fake: FakeKraken, clock: VirtualClock, captured_logs: io.StringIO
) -> None:
    shown: list[str] = []
    wrong = KrakenCredentials(CANARY_KEY, base64.b64encode(b"Canary-wrong-" + bytes(40)).decode())
    async with asyncio.timeout(30):
        kraken = connect(fake, clock, "kraken-canary", request_timeout_s=0.5)
        liar = connect(fake, clock, "kraken-canary", credentials=wrong)
        shown += [
            repr(kraken),
            str(kraken),
            repr(kraken.rest),
            repr(KrakenCredentials(CANARY_KEY, CANARY_SECRET)),
        ]
        await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("canary-ok"))
        fake.inject("AddOrder", "accept_then_drop", "accept_then_hang", "unavailable", "garbage", "lockout")
        for n in range(5):
            try:
                await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid(f"canary-{n}"))
            except (VenueError, OutcomeUnknown) as exc:
                shown += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
        await clock.sleep(900)
        try:
            await liar.balances()
        except VenueError as exc:
            shown += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
        await kraken.close()
        await liar.close()
    shown += [captured_logs.getvalue(), generate_latest(REGISTRY).decode()]
    text = "\n".join(shown)
    assert "EAPI:Invalid signature" in text and "kraken_order_acknowledged" in text  # the paths ran
    assert CANARY_KEY not in text and CANARY_SECRET not in text and "Canary-wrong" not in text
    assert not any(signature in text for signature in fake.signatures if signature)


async def test_private_requests_go_one_at_a_time_and_an_order_never_waits_long_behind_a_hung_one(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    fake.inject("AddOrder", "accept_then_hang")
    kraken = connect(fake, clock, "kraken-turns", request_timeout_s=1.0, order_max_wait_s=0.2)
    async with asyncio.timeout(10), kraken:
        hung = asyncio.create_task(kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("hung")))
        await fake.order_executed.wait()  # the engine has it; its answer never comes
        with pytest.raises(RateLimited, match="in flight"):
            await kraken.place_order("BTC-USDT", "buy", D("0.01"), D("64002"), cid("queued"))
        with pytest.raises(OutcomeUnknown):
            await hung
    assert fake.executions == {cid("hung"): 1} and len(fake.requests_to("AddOrder")) == 1
