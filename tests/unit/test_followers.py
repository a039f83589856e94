"""TopicFollower without a broker: when it counts as caught up, and how long it waits for a silent one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from daemon.config import KafkaConfig
from daemon.errors import KafkaUnavailable
from daemon.kafka.followers import TopicFollower

TOPIC = "t.control"
TP = TopicPartition(TOPIC, 0)


class FakeConsumer:
    """The part of AIOKafkaConsumer a follower uses, over a list of records on one partition."""

    def __init__(self, records: int, *, exists: bool = True, answers: bool = True) -> None:
        self.records = [
            ConsumerRecord(TOPIC, 0, i, 0, 0, None, b"r%d" % i, None, 0, 2, ()) for i in range(records)
        ]
        self.exists = exists
        self.answers = answers  # False: end offsets never come back
        self.deliver = True  # False: fetches return nothing, as from a broker that stopped answering
        self.created = False  # True: the topic exists now, and the next fetch's metadata refresh assigns it
        self.next = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def assignment(self) -> set[TopicPartition]:
        return {TP} if self.exists else set()

    async def topics(self) -> set[str]:
        return {TOPIC} if self.exists or self.created else set()

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if not self.answers:
            await asyncio.Event().wait()
        return dict.fromkeys(partitions, len(self.records))

    async def position(self, tp: TopicPartition) -> int:
        return self.next

    async def getmany(
        self, timeout_ms: int = 0, **_: Any
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        if self.created and not self.exists:
            self.exists = True  # the consumer's periodic metadata refresh found the topic
            return {}
        if not self.exists or not self.deliver or self.next >= len(self.records):
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        batch = self.records[self.next : self.next + 2]
        self.next += len(batch)
        return {TP: batch}


caught_up_before: list[bool] = []  # for each record applied: whether the follower said caught up already


def follower(consumer: FakeConsumer, applied: list[bytes], timeout_s: float = 0.5) -> TopicFollower:
    caught_up_before.clear()

    async def apply(record: ConsumerRecord[bytes, bytes]) -> None:
        assert record.value is not None
        applied.append(record.value)
        caught_up_before.append(follow.caught_up.is_set())

    follow = TopicFollower(
        KafkaConfig(), TOPIC, apply, timeout_s=timeout_s, consumer_factory=lambda *a, **k: consumer
    )
    return follow


async def test_caught_up_only_once_every_record_present_at_start_was_applied() -> None:
    applied: list[bytes] = []
    follow = follower(FakeConsumer(5), applied)
    stop = asyncio.Event()
    task = asyncio.create_task(follow.run(stop))
    async with asyncio.timeout(5):
        await follow.caught_up.wait()
    assert applied == [b"r0", b"r1", b"r2", b"r3", b"r4"]
    assert caught_up_before == [False] * 5
    stop.set()
    await task


async def test_a_topic_that_does_not_exist_counts_as_empty() -> None:
    follow = follower(FakeConsumer(0, exists=False), [])
    stop = asyncio.Event()
    task = asyncio.create_task(follow.run(stop))
    async with asyncio.timeout(5):
        await follow.caught_up.wait()
    stop.set()
    await task


async def test_end_offsets_that_never_come_are_an_error_naming_the_topic_and_the_wait() -> None:
    follow = follower(FakeConsumer(3, answers=False), [], timeout_s=0.2)
    with pytest.raises(KafkaUnavailable, match=r"reading t\.control .* within 0\.2 s .* end offsets"):
        async with asyncio.timeout(5):
            await follow.run(asyncio.Event())
    assert not follow.caught_up.is_set()


async def test_records_that_stop_coming_before_the_end_are_an_error_saying_how_far_it_must_read() -> None:
    consumer = FakeConsumer(5)
    consumer.deliver = False
    follow = follower(consumer, [], timeout_s=0.3)
    with pytest.raises(KafkaUnavailable, match=r"records up to the end offsets at start \(partition 0: 5\)"):
        async with asyncio.timeout(5):
            await follow.run(asyncio.Event())
    assert not follow.caught_up.is_set()


async def test_sync_returns_once_the_records_written_since_start_are_applied() -> None:
    consumer = FakeConsumer(2)
    applied: list[bytes] = []
    follow = follower(consumer, applied)
    stop = asyncio.Event()
    task = asyncio.create_task(follow.run(stop))
    async with asyncio.timeout(5):
        await follow.caught_up.wait()
    consumer.records += [
        ConsumerRecord(TOPIC, 0, i, 0, 0, None, b"r%d" % i, None, 0, 2, ()) for i in (2, 3, 4)
    ]
    await follow.sync(timeout_s=5)
    assert applied == [b"r0", b"r1", b"r2", b"r3", b"r4"]

    consumer.records.append(ConsumerRecord(TOPIC, 0, 5, 0, 0, None, b"r5", None, 0, 2, ()))
    consumer.deliver = False  # the broker stops answering fetches
    with pytest.raises(
        KafkaUnavailable, match=r"within 0\.2 s while waiting for every record written so far"
    ):
        await follow.sync(timeout_s=0.2)
    stop.set()
    await task


async def test_sync_reads_a_topic_created_after_the_start_once_it_is_assigned() -> None:
    consumer = FakeConsumer(0, exists=False)
    applied: list[bytes] = []
    follow = follower(consumer, applied)
    stop = asyncio.Event()
    task = asyncio.create_task(follow.run(stop))
    async with asyncio.timeout(5):
        await follow.caught_up.wait()  # no topic: nothing to read
    consumer.records.append(ConsumerRecord(TOPIC, 0, 0, 0, 0, None, b"first", None, 0, 5, ()))
    consumer.created = True
    await follow.sync(timeout_s=5)
    assert applied == [b"first"]
    stop.set()
    await task
