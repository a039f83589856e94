"""Requests in flight: other keys at once, one key in order, offsets committed under the lowest open one."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from aiokafka.structs import TopicPartition

from daemon.config import RouterConfig
from daemon.in_flight import Watermarks
from daemon.router_service import RouterService
from router.intake import Handled
from router.per_key import PerKey

P0 = TopicPartition("smartroute.orders", 0)
P1 = TopicPartition("smartroute.orders", 1)


def test_the_watermark_stops_at_the_lowest_request_not_yet_answered() -> None:
    marks = Watermarks()
    for offset in (10, 11, 12, 13):
        marks.started(P0, offset)
    marks.started(P1, 5)
    marks.answered(P0, 11)
    marks.answered(P0, 13)
    marks.answered(P1, 5)
    assert marks.committable() == {P1: 6}  # 10 is open on P0: nothing of P0 may be committed
    marks.answered(P0, 10)
    assert marks.committable() == {P0: 12}  # 12 is open
    assert marks.committable() == {}  # nothing moved since
    marks.answered(P0, 12)
    assert marks.committable() == {P0: 14} and marks.open() == 0


def test_partitions_a_rebalance_took_are_forgotten_and_their_late_answers_ignored() -> None:
    marks = Watermarks()
    for offset in (10, 11):
        marks.started(P0, offset)
    marks.started(P1, 5)
    marks.answered(P0, 10)
    assert marks.committable() == {P0: 11}  # committed before the partition goes
    marks.forget(frozenset({P0}))
    marks.answered(P0, 11)  # a request of P0 still running when it went: answered, nothing to commit
    assert marks.committable() == {} and marks.open() == 1
    marks.started(P0, 11)  # P0 assigned back: read again from its committed offset
    assert marks.committable() == {}
    marks.answered(P0, 11)
    assert marks.committable() == {P0: 12}


async def test_work_for_one_key_runs_in_call_order_and_other_keys_run_meanwhile() -> None:
    keys = PerKey()
    order: list[str] = []
    release_a1 = asyncio.Event()

    async def step(name: str, wait: asyncio.Event | None = None) -> str:
        if wait is not None:
            await wait.wait()
        order.append(name)
        return name

    a1 = asyncio.create_task(keys.run("a", step("a1", release_a1)))
    a2 = asyncio.create_task(keys.run("a", step("a2")))
    b1 = asyncio.create_task(keys.run("b", step("b1")))
    await asyncio.wait_for(b1, 1)
    assert order == ["b1"] and not a2.done()  # a2 waits behind a1; b is not held up
    release_a1.set()
    assert await asyncio.gather(a1, a2) == ["a1", "a2"]
    assert order == ["b1", "a1", "a2"] and not keys.busy("a")


async def test_a_waiter_cancelled_in_the_queue_never_lets_the_next_one_jump_ahead() -> None:
    keys = PerKey()
    release = asyncio.Event()
    running: list[str] = []

    async def step(name: str) -> None:
        running.append(name)
        await release.wait()

    first = asyncio.create_task(keys.run("k", step("first")))
    second = asyncio.create_task(keys.run("k", step("second")))
    third = asyncio.create_task(keys.run("k", step("third")))
    await asyncio.sleep(0.01)
    second.cancel()
    await asyncio.sleep(0.01)
    assert running == ["first"]  # third still waits for first
    release.set()
    await asyncio.gather(first, third)
    assert running == ["first", "third"]


def record(offset: int, key: bytes, request_id: str, partition: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="smartroute.orders",
        partition=partition,
        offset=offset,
        timestamp=1,
        timestamp_type=0,
        key=key,
        value=orjson.dumps({"request_id": request_id}),
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=1,
        headers=(),
    )


class SlowVenueRouter:
    """Answers at once, except requests for the slow key, which wait until the venue is back."""

    def __init__(self) -> None:
        self.venue_back = asyncio.Event()
        self.started: list[str] = []

    async def handle(self, raw: bytes, **_: object) -> Handled:
        request_id = orjson.loads(raw)["request_id"]
        self.started.append(request_id)
        if request_id.startswith("slow"):
            await self.venue_back.wait()
        return Handled(
            request_id, f"result {request_id}".encode(), executed=True, replayed=False, invalid=None
        )


class OneFetchConsumer:
    """Hands out its records in one fetch, then nothing; records every commit."""

    def __init__(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.records = records
        self.commits: list[dict[TopicPartition, int]] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        fetched, self.records = self.records, []
        if not fetched:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        by_partition: dict[TopicPartition, list[Any]] = {}
        for r in fetched:
            by_partition.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
        return by_partition

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)


class Published(list[bytes]):
    """The result values the service published, in order; `until(n)` waits for the n-th."""

    def __init__(self) -> None:
        super().__init__()
        self.grew = asyncio.Event()

    async def until(self, count: int) -> None:
        while len(self) < count:
            self.grew.clear()
            await self.grew.wait()


def service(router: SlowVenueRouter, published: Published, max_in_flight: int = 64) -> Any:
    svc: Any = RouterService.__new__(RouterService)  # the order loop alone: no broker, no followers
    svc.settings = RouterConfig(max_in_flight=max_in_flight)
    svc.router = router
    svc.orders_topic, svc.results_topic, svc.dlq_topic = "smartroute.orders", "results", "dlq"
    svc.kafka = None

    async def send_all(messages: list[tuple[str, bytes | None, bytes]]) -> None:
        published.extend(value for _, _, value in messages)
        published.grew.set()

    svc._send_all = send_all
    return svc


async def no_lag(*_: object) -> None:
    return None


async def test_a_slow_venue_delays_only_its_key_and_holds_the_commit_below_it(monkeypatch: Any) -> None:
    monkeypatch.setattr("daemon.router_service.record_consumer_lag", no_lag)
    router, published = SlowVenueRouter(), Published()
    consumer = OneFetchConsumer(
        [
            record(0, b"desk-a", "a-1"),
            record(1, b"desk-slow", "slow-1"),
            record(2, b"desk-slow", "slow-2"),
            record(3, b"desk-b", "b-1"),
            record(4, b"desk-a", "a-2"),
        ]
    )
    svc, stop = service(router, published), asyncio.Event()
    serving = asyncio.create_task(RouterService._serve_in_flight(svc, consumer, Watermarks(), stop))
    await asyncio.wait_for(published.until(3), 5)
    await asyncio.sleep(0.2)  # a poll later: the commit reflects what is answered

    assert sorted(published) == [b"result a-1", b"result a-2", b"result b-1"]  # not held up by slow-1
    assert "slow-2" not in router.started  # same key as slow-1: waits its turn
    assert consumer.commits[-1] == {P0: 1}  # offset 1 (slow-1) is not answered: it is read again
    router.venue_back.set()
    await asyncio.wait_for(published.until(5), 5)
    stop.set()
    await asyncio.wait_for(serving, 5)
    assert published[-2:] == [b"result slow-1", b"result slow-2"]  # one key, in order
    assert consumer.commits[-1] == {P0: 5}


async def test_no_more_than_max_in_flight_requests_are_answered_at_once(monkeypatch: Any) -> None:
    monkeypatch.setattr("daemon.router_service.record_consumer_lag", no_lag)
    router, published = SlowVenueRouter(), Published()
    consumer = OneFetchConsumer([record(i, f"k{i}".encode(), f"slow-{i}") for i in range(6)])
    svc, stop = service(router, published, max_in_flight=4), asyncio.Event()
    serving = asyncio.create_task(RouterService._serve_in_flight(svc, consumer, Watermarks(), stop))
    await asyncio.sleep(0.2)
    assert len(router.started) == 4
    router.venue_back.set()
    await asyncio.wait_for(published.until(6), 5)
    stop.set()
    await asyncio.wait_for(serving, 5)
    assert consumer.commits[-1] == {P0: 6}
