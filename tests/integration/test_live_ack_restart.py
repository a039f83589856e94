"""An order the venue acknowledged must not be settled as "never placed" after a restart.

When a venue acknowledges an order (it answers with its order id) but no query shows the order
yet, the client raises `OrderAcknowledged` and the executor keeps querying without ever taking
"not found" as final (`LiveExecutor.execute`). If the venue still cannot show it when the
queries run out, `ExecutionError` leaves the leg "sent" in the ledger, "settled from the venue at
the next start" — and a SIGKILL right after the acknowledgement leaves exactly the same ledger.

Before the ledger recorded acknowledgements, the restart (`router.recovery.recover_request` →
`LiveExecutor.recover`) treated that leg like any order of unknown fate: "not found" became
final once the venue's acceptance window had passed since the restart, and an acknowledged
order still invisible then was reported "never accepted, not executed" while the venue
executed it — a fill the desk never learns of. The ledger now keeps the venue order id of
every acknowledged leg (`Ledger.record_acknowledged`), and recovery never takes "not found"
as final for such a leg.

Each fake keeps the acknowledged order invisible a while (OKX for its first queries, Kraken
and Bybit for some seconds on a virtual clock); the venue windows are short so the test is
quick. The first run answers ExecutionError ("stays in flight"); the restart must report the
venue's execution.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import fake_bybit
import fake_kraken
import fake_okx
import orjson
import pytest
from fake_venue import VirtualClock, VirtualThrottle

from connectors.bybit.signing import BybitCredentials
from connectors.bybit.trading import BybitTrading
from connectors.kraken.private import Tier
from connectors.kraken.signing import KrakenCredentials
from connectors.kraken.trading import KrakenTrading
from connectors.okx.signing import OkxCredentials
from connectors.okx.trading import OkxTrading
from connectors.registry import client_order_id
from connectors.trading import TradingVenue
from connectors.types import Quote
from router.cache import PriceCache
from router.kill_switch import KillSwitch
from router.ledger import Ledger
from router.live import LiveExecutor, SettlePolicy
from router.preferences import PreferenceStore
from router.request import RequestRules
from router.risk import RiskGate, RiskLimits
from router.smart import SmartRouter

pytestmark = pytest.mark.integration

D = Decimal
BID, ASK, DEPTH = D("64000"), D("64001"), D("5")
QUANTITY = "0.05"
FIRST_RUN = SettlePolicy(query_delays_s=(0.05, 0.05), finality_margin_ms=100)  # 3 queries, then in flight
RESTART = SettlePolicy(query_delays_s=(0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2), finality_margin_ms=100)
# Wide counters: waiting for the REST counter would move the virtual clock past the invisibility.
WIDE_KRAKEN = Tier(rest_capacity=1000, rest_decay_per_s=100, order_capacity=180, order_decay_per_s=3.75)


@dataclass(frozen=True)
class Case:
    """One venue's fake and how to connect to it, on the clock the fake runs on."""

    venue: str
    fake: Any
    connect: Callable[[], TradingVenue]
    sleep: Callable[[float], Awaitable[None]]
    monotonic: Callable[[], float]
    executed: Callable[[], dict[str, Decimal]]  # quantity executed by client order id


@asynccontextmanager
async def okx() -> AsyncIterator[Case]:
    async with fake_okx.FakeOkx() as fake:
        fake.set_book("BTC-USDT", [(str(BID), str(DEPTH))], [(str(ASK), str(DEPTH))])
        # Invisible to the read right after the acknowledgement, the first run's 3 queries and
        # the restart's first 3: a restart that keeps querying finds it at its 4th.
        fake.hide_new_orders(7)
        credentials = OkxCredentials(fake_okx.API_KEY, fake_okx.API_SECRET, fake_okx.PASSPHRASE)
        yield Case(
            "okx",
            fake,
            lambda: OkxTrading(
                credentials=credentials,
                rest_url=fake.rest_url,
                symbols=["BTC-USDT"],
                order_deadline_ms=500,
                visibility_margin_ms=200,
            ),
            asyncio.sleep,
            time.monotonic,
            lambda: {o.cl_ord_id: o.filled for o in fake.orders},
        )


@asynccontextmanager
async def kraken() -> AsyncIterator[Case]:
    clock = VirtualClock(start=1000.0)  # small: at 1.8e9 a float cannot add the throttle's tiny waits
    # Acknowledged at 0, unseen by the client's reads until its window ends (3 s), by the first
    # run's queries, and by the restart's until it has waited its window (3.1 s) again: 8 s.
    async with fake_kraken.FakeKraken(
        clock=clock, visible_after_s=8.0, rest_capacity=1000, rest_decay_per_s=100
    ) as fake:
        fake.set_book("XBTUSDT", [(str(BID), str(DEPTH))], [(str(ASK), str(DEPTH))])
        credentials = KrakenCredentials(fake_kraken.API_KEY, fake_kraken.API_SECRET)
        yield Case(
            "kraken",
            fake,
            lambda: KrakenTrading(
                credentials=credentials,
                symbols=["BTC-USDT"],
                rest_url=fake.rest_url,
                deadline_s=2.0,
                tier=WIDE_KRAKEN,
                request_timeout_s=2.0,
                throttle=VirtualThrottle(clock, "kraken"),
            ),
            clock.sleep,
            clock,
            lambda: {o.cl_ord_id: o.vol_exec for o in fake.orders},
        )


@asynccontextmanager
async def bybit() -> AsyncIterator[Case]:
    clock = fake_bybit.VirtualClock()
    # Acknowledged at 0, unseen by the client's visibility reads (3.15 s), the first run's
    # queries and the restart's until its recv window (2 s + margin) has passed: 8 s.
    async with fake_bybit.FakeBybit(clock=clock, late_s=8.0) as fake:
        fake.set_book("BTCUSDT", [(str(BID), str(DEPTH))], [(str(ASK), str(DEPTH))])
        fake.inject("POST", "/v5/order/create", "late_visible")
        credentials = BybitCredentials(fake_bybit.API_KEY, fake_bybit.API_SECRET)
        yield Case(
            "bybit",
            fake,
            lambda: BybitTrading(
                credentials,
                ["BTC-USDT"],
                rest_url=fake.rest_url,
                recv_window_ms=2000,
                request_timeout_s=2.0,
                wall_ms=clock.wall_ms,
                monotonic=clock,
                sleep=clock.sleep,
            ),
            clock.sleep,
            clock,
            lambda: {o.link_id: o.cum_qty for o in fake.orders},
        )


CASES = {"okx": okx, "kraken": kraken, "bybit": bybit}


@asynccontextmanager
async def live_router(
    case: Case, state: Path, policy: SettlePolicy
) -> AsyncIterator[tuple[SmartRouter, Ledger]]:
    """A SmartRouter trading live on the case's venue only, and the ledger in `state` it writes."""
    executor = LiveExecutor(
        {case.venue: case.connect()},
        taker_fee_bps={case.venue: D(10)},
        policy=policy,
        sleep=case.sleep,
        monotonic=case.monotonic,
    )
    cache = PriceCache(ttl_ms=600_000, max_quote_age_ms=600_000)
    now = time.time_ns()
    cache.update(
        Quote(
            case.venue, "BTC-USDT", BID, DEPTH, ASK, DEPTH, None, now, None, ((BID, DEPTH),), ((ASK, DEPTH),)
        )
    )
    ledger = Ledger.open(state)
    router = SmartRouter(
        cache,
        executor,
        ledger,
        PreferenceStore({}, known_venues=(case.venue,)),
        RiskGate(RiskLimits(D(10_000_000), 100, D(100_000_000))),
        KillSwitch(ledger),
        RequestRules(frozenset({case.venue}), frozenset({"BTC-USDT"})),
        {case.venue: D(10)},
    )
    try:
        await executor.start()
        yield router, ledger
    finally:
        await executor.close()
        ledger.close()


@pytest.mark.parametrize("name", ["okx", "kraken", "bybit"])
async def test_an_order_acknowledged_but_not_yet_visible_is_not_settled_as_never_placed_at_restart(
    name: str, tmp_path: Path
) -> None:
    request = {"v": 1, "request_id": "ack-1", "user_id": "desk", "kind": "order", "symbol": "BTC-USDT"}
    request |= {"side": "buy", "quantity": QUANTITY, "venues": [name]}
    async with CASES[name]() as case:
        coid = client_order_id(name, "ack-1", 0)
        async with live_router(case, tmp_path / "state", FIRST_RUN) as (first, first_ledger):
            held = await first.handle(orjson.dumps(request))
            assert held.result is None and first.settler.holds("ack-1")  # answered by the settler
            assert [leg.state for leg in first_ledger.legs("ack-1")] == ["sent"]
        assert case.executed() == {coid: D(QUANTITY)}  # the venue executed it

        async with live_router(case, tmp_path / "state", RESTART) as (restarted, restarted_ledger):
            assert await restarted.recover() == []  # owed: the settler tries it at once
            published: dict[str, bytes] = {}
            assert await restarted.settler.step(lambda rid, result: _store(published, rid, result)) == 1
            recovered = published["ack-1"]
            [leg] = restarted_ledger.legs("ack-1")
        executed = case.executed()
    result = orjson.loads(recovered)
    assert executed == {coid: D(QUANTITY)}
    assert (result["status"], result["filled_quantity"]) == ("filled", QUANTITY), leg.outcome


async def _store(published: dict[str, bytes], request_id: str, result: bytes) -> None:
    published[request_id] = result
