"""Group-less topic followers: read a topic from a chosen start, apply every record, say when caught up.

The router follows `smartroute.control`, `smartroute.preferences` and (in the `route` role)
`smartroute.opportunities` this way: no consumer group, every partition, in order, so every
router process sees every record. `caught_up` is set once every record that was in the topic
when the follower started has been applied: the router takes no order request before that, so a
halt or a preference written while it was down governs the first request it handles.

A topic that does not exist yet counts as empty (end offset 0). Getting there is bounded: if the
broker answers nothing for `timeout_s` — no connection, no end offsets, no record while records
are due — `run()` raises KafkaUnavailable saying which topic and what it was waiting for. A long
topic that keeps being read is not an error: the deadline counts from the last progress.

`sync()` waits until everything in the topic *now* has been applied (the opportunities check uses
it before declaring closed an opportunity it has not seen).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

import structlog
from aiokafka import ConsumerRecord, TopicPartition

from daemon.config import KafkaConfig
from daemon.errors import KafkaUnavailable
from daemon.kafka.consumers import Consumer, new_consumer, start_unless_stopped

log = structlog.get_logger(__name__)

Apply = Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]]
ConsumerFactory = Callable[..., Consumer]

_POLL_MS: Final = 100
# The longest a fetch waits at the broker when nothing is there. Tansu holds an empty fetch for
# about half of it whatever arrives meanwhile (aiokafka's default 500 ms cost ~100 ms a record on
# average); on Kafka it is only an upper bound, as the broker answers as soon as a record arrives,
# and what it sets is how many fetches an idle consumer sends (50 a second at 20 ms).
FETCH_MAX_WAIT_MS: Final = 20

_T = TypeVar("_T")


class TopicFollower:
    """Apply every record of one topic from its first offset (or `lookback_ms` back) while it runs."""

    def __init__(
        self,
        cfg: KafkaConfig,
        topic: str,
        apply: Apply,
        *,
        timeout_s: float,
        lookback_ms: int | None = None,
        fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
        consumer_factory: ConsumerFactory = new_consumer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.topic = topic
        self.apply = apply
        self.timeout_s = timeout_s
        self.lookback_ms = lookback_ms
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.caught_up = asyncio.Event()
        self._consumer_factory = consumer_factory
        self._clock = clock
        self._consumer: Consumer | None = None
        self._progress = 0  # records applied
        self._polled = asyncio.Event()  # set after each fetch's records were applied
        self._ends_at_start: dict[TopicPartition, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the topic until `stop`; raise KafkaUnavailable if catching up stalls past `timeout_s`."""
        consumer = self._consumer_factory(
            self.cfg,
            self.topic,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            metadata_max_age_ms=1000,  # notice the topic soon after its first message creates it
        )
        try:
            started = await self._bounded(start_unless_stopped(consumer, stop), "a connection to the broker")
            if not started:
                return
            pending = await self._bounded(self._start_position(consumer), "the topic's end offsets")
            self._ends_at_start = dict(pending)
            self._consumer = consumer
            await self._follow(consumer, pending, stop)
        except KafkaUnavailable as exc:
            log.error("topic_not_read", topic=self.topic, error=str(exc))
            raise
        finally:
            self._consumer = None
            await consumer.stop()

    async def sync(self, timeout_s: float) -> None:
        """Return once every record in the topic now has been applied; KafkaUnavailable past `timeout_s`.

        A topic created after the follower started is assigned at the next metadata refresh
        (`metadata_max_age_ms`, 1 s): sync waits for it rather than call the new topic empty.
        """
        try:
            async with asyncio.timeout(timeout_s):
                await self.caught_up.wait()
                consumer = self._consumer
                if consumer is None:
                    return  # stopped: nothing more will be read
                if not consumer.assignment() and self.topic in await consumer.topics():
                    await self._assigned(consumer)  # created since the start: the next refresh assigns it
                ends = await consumer.end_offsets(list(consumer.assignment()))
                while True:
                    self._polled.clear()
                    if not await _short_of(consumer, ends):
                        return
                    await self._polled.wait()  # the run loop applied what its next fetch brought
        except TimeoutError:
            raise self._stalled("every record written so far", timeout_s) from None

    def historical(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Return whether `record` was already in the topic when this follower started (history, not news)."""
        end = self._ends_at_start.get(TopicPartition(record.topic, record.partition), 0)
        offset: int = record.offset
        return offset < end

    async def _assigned(self, consumer: Consumer) -> None:
        while not consumer.assignment():
            self._polled.clear()
            await self._polled.wait()

    async def _start_position(self, consumer: Consumer) -> dict[TopicPartition, int]:
        """Seek to where reading starts; return each partition's end offset now, if records are due there."""
        partitions = sorted(consumer.assignment())  # every partition of the topic; none if it does not exist
        if not partitions:
            return {}
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        if self.lookback_ms is not None:
            since_ms = int(time.time() * 1000) - self.lookback_ms
            found = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
            for tp in partitions:
                at = found.get(tp)
                consumer.seek(tp, ends[tp] if at is None else min(at.offset, ends[tp]))
        return {tp: end for tp, end in ends.items() if end > 0}

    async def _follow(
        self, consumer: Consumer, pending: dict[TopicPartition, int], stop: asyncio.Event
    ) -> None:
        last_progress = self._clock()
        while not stop.is_set():
            if not self.caught_up.is_set():
                if not await self._bounded(_short_of(consumer, pending), "its position"):
                    self.caught_up.set()
                    log.info("topic_caught_up", topic=self.topic, records=self._progress)
                elif self._clock() - last_progress > self.timeout_s:
                    raise self._stalled(f"records up to the end offsets at start {_offsets(pending)}")
            batches = await consumer.getmany(timeout_ms=_POLL_MS)
            for records in batches.values():
                for record in records:
                    await self.apply(record)
                    self._progress += 1
                last_progress = self._clock()
            self._polled.set()

    async def _bounded(self, step: Coroutine[Any, Any, _T] | Awaitable[_T], waiting_for: str) -> _T:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await step
        except TimeoutError:
            raise self._stalled(waiting_for) from None

    def _stalled(self, waiting_for: str, timeout_s: float | None = None) -> KafkaUnavailable:
        servers = ",".join(self.cfg.bootstrap_servers)
        waited = self.timeout_s if timeout_s is None else timeout_s
        return KafkaUnavailable(
            f"reading {self.topic} at {servers}: no answer within {waited:g} s "
            f"while waiting for {waiting_for}"
        )


async def _short_of(consumer: Consumer, ends: dict[TopicPartition, int]) -> bool:
    """Return whether the consumer's position is still before `ends` on any partition."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


def _offsets(ends: dict[TopicPartition, int]) -> str:
    return "(" + ", ".join(f"partition {tp.partition}: {end}" for tp, end in sorted(ends.items())) + ")"
