"""Turn buffered messages into aiokafka record batches: one open batch per (topic, partition), in order.

    keys = KeyPartitions()                                   # kept for the producer's life
    routes = {topic: keys.route(topic, partitions, available)}  # after awaiting the topic's metadata
    batches, failures = build(messages, routes, producer.create_batch)
    # submit batches in list order (per partition, that is publish order); count each failure

A message goes to the partition `AIOKafkaProducer.send()` would pick: aiokafka's DefaultPartitioner,
murmur2 of the key as in the Java client, over the topic's partitions sorted by id. So per-key order
and co-partitioning with other producers of the same topic hold. Unkeyed messages of one pass share
one partition, chosen by the same partitioner (at random among those with a leader).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder

MAX_REQUEST_SIZE: Final = 1024 * 1024  # aiokafka's default; send() refuses a larger message
# A produce request carries one batch per partition of a broker, one request at a time: bigger
# batches are what lifts throughput (Tansu, 300-byte messages: 16 KiB ≈ 140k msgs/s, 256 KiB ≈ 300k).
MAX_BATCH_SIZE: Final = 256 * 1024
_MAX_CACHED_KEYS: Final = 10_000  # per topic: keys are symbols, but a DLQ may see any key
_PARTITIONER: Final = DefaultPartitioner()  # the partitioner AIOKafkaProducer uses by default

Message = tuple[str, bytes | None, bytes]  # topic, key, value


@dataclass(slots=True)
class Batch:
    """Messages for one topic and partition, appended to one aiokafka BatchBuilder in publish order."""

    topic: str
    partition: int
    builder: Any  # aiokafka.producer.message_accumulator.BatchBuilder
    first_key: bytes | None
    count: int = 1


@dataclass(frozen=True, slots=True)
class Failure:
    """Messages of one topic that cannot be sent, counted and logged together."""

    topic: str
    first_key: bytes | None
    count: int
    error: Exception


@dataclass(slots=True)
class Route:
    """Where one pass's messages of a topic go: each key's partition, and each partition's open batch."""

    partitions: list[int]
    by_key: dict[bytes, int]  # shared across passes while the topic's partitions stay the same
    unkeyed: int
    open: dict[int, Batch] = field(default_factory=dict)

    def partition(self, key: bytes | None) -> int:
        """Return the partition AIOKafkaProducer.send() would pick for `key` (unkeyed: this pass's pick)."""
        if key is None:
            return self.unkeyed
        partition = self.by_key.get(key)
        if partition is None:
            partition = self.by_key[key] = _PARTITIONER(key, self.partitions, self.partitions)
        return partition


class KeyPartitions:
    """Remember each key's partition per topic (murmur2 in pure Python is the costly part of a route)."""

    def __init__(self) -> None:
        self._by_topic: dict[str, tuple[list[int], dict[bytes, int]]] = {}

    def route(self, topic: str, partitions: Iterable[int], available: Iterable[int]) -> Route:
        """Return a route for one pass over `topic`, given its partitions and those that have a leader."""
        ordered = sorted(partitions)
        cached = self._by_topic.get(topic)
        if cached is None or cached[0] != ordered or len(cached[1]) > _MAX_CACHED_KEYS:
            cached = self._by_topic[topic] = (ordered, {})
        return Route(ordered, cached[1], _PARTITIONER(None, ordered, list(available)))


def build(
    messages: Iterable[Message], routes: dict[str, Route], create_batch: Callable[[], Any]
) -> tuple[list[Batch], list[Failure]]:
    """Append each message to its partition's open batch; return the batches in the order they began.

    A message begins a new batch when its partition has none open or the open one is full. One
    too large for any request fails, as send() would refuse it. Messages of a topic without a
    route are skipped: the caller has counted them.
    """
    batches: list[Batch] = []
    too_large: dict[str, Failure] = {}
    for topic, key, value in messages:
        route = routes.get(topic)
        if route is None:
            continue
        partition = route.partition(key)
        batch = route.open.get(partition)
        if batch is not None and batch.builder.append(timestamp=None, key=key, value=value) is not None:
            batch.count += 1
            continue
        error = _too_large(key, value)  # only a batch's first message can be: the rest fit beside others
        if error is None:
            builder = create_batch()
            if builder.append(timestamp=None, key=key, value=value) is not None:
                batch = route.open[partition] = Batch(topic, partition, builder, key)
                batches.append(batch)
                continue
            error = MessageSizeTooLargeError("an empty record batch refused the message")
        failed = too_large.get(topic)
        if failed is None:
            too_large[topic] = Failure(topic, key, 1, error)
        else:
            too_large[topic] = Failure(topic, failed.first_key, failed.count + 1, failed.error)
    return batches, list(too_large.values())


def count_by_topic(batches: Iterable[Batch]) -> Counter[str]:
    """Return how many messages `batches` hold, per topic."""
    counts: Counter[str] = Counter()
    for batch in batches:
        counts[batch.topic] += batch.count
    return counts


def _too_large(key: bytes | None, value: bytes) -> MessageSizeTooLargeError | None:
    """Return the error AIOKafkaProducer.send() raises for a message above the request size, else None."""
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
    if size <= MAX_REQUEST_SIZE:
        return None
    return MessageSizeTooLargeError(
        f"The message is {size} bytes when serialized, larger than the maximum request size "
        f"({MAX_REQUEST_SIZE} bytes)"
    )
