"""The Publisher: a bounded, never-blocking buffer drained into aiokafka (settings: daemon.kafka.settings).

    publisher = Publisher(cfg.kafka)
    await publisher.start()                       # KafkaUnavailable if no bootstrap server answers
    async with asyncio.TaskGroup() as tg:
        tg.create_task(publisher.run())           # the drain task; returns once close() has drained
        publisher.publish(topic, key, value)      # synchronous: True if buffered, False if refused
        ...
        await publisher.send_and_wait(messages)   # bypass the buffer: wait until the broker acknowledged all
        await publisher.close(timeout_s)          # stop intake, drain, flush, stop the producer

Nothing is dropped silently: every message ends as sent, a produce error, an overflow or an
unsent-at-close, each with its counter in `daemon.metrics` and a log event naming topic and key
(for a batch of many messages: how many, and the first one's key).

The drain task wakes, takes what has gathered (at most `_MAX_TAKE` messages) and hands it to
aiokafka as whole record batches, one per (topic, partition) at a time, each with one delivery
callback. A message's partition is the one `AIOKafkaProducer.send()` would choose: murmur2 of its
key (Java-compatible), so per-key order and co-partitioning with other producers hold; unkeyed
messages share one available partition per wake. `linger_ms` is how long the drain task lets a
burst gather after waking from idle; under load it never waits, since every wake finds a backlog.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from functools import partial
from types import TracebackType
from typing import Final, Self

import structlog
from aiokafka.errors import KafkaError

from daemon.config import KafkaConfig
from daemon.kafka.access import AUTHORIZATION_ERRORS, denied
from daemon.kafka.batches import (
    MAX_BATCH_SIZE,
    MAX_REQUEST_SIZE,
    Batch,
    KeyPartitions,
    Message,
    Route,
    build,
    count_by_topic,
)
from daemon.kafka.settings import Producer, start_producer
from daemon.metrics import (
    KAFKA_BUFFER_OVERFLOW,
    KAFKA_MESSAGES_SENT,
    KAFKA_MESSAGES_UNSENT,
    KAFKA_PRODUCE_ERRORS,
    UNSENT_REASONS,
    UnsentReason,
    track_send_buffer,
    watch_kafka_client_errors,
)

__all__ = ["Publisher", "init_publisher_metrics"]

log = structlog.get_logger(__name__)

_TOPIC_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,249}")
_OVERFLOW_LOG_INTERVAL_S: Final = 1.0
_DEFAULT_CLOSE_TIMEOUT_S: Final = 10.0
_CALLBACK_GRACE_S: Final = 1.0
_MAX_TAKE: Final = 2048  # messages per wake: bounds how long one pass holds the event loop


def init_publisher_metrics(topics: Iterable[str]) -> None:
    """Create every publisher series for `topics` at zero, so dashboards and alerts see them from start.

    Also start counting the Kafka client's own errors (`smartroute_kafka_client_errors_total`).
    """
    watch_kafka_client_errors()
    for topic in topics:
        for counter in (KAFKA_MESSAGES_SENT, KAFKA_PRODUCE_ERRORS, KAFKA_BUFFER_OVERFLOW):
            counter.labels(topic)
        for reason in UNSENT_REASONS:
            KAFKA_MESSAGES_UNSENT.labels(topic, reason)


def _key_text(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", "backslashreplace")


class Publisher:
    """Publish to Kafka without ever blocking the caller: a bounded buffer, drained by `run()`.

    The producer runs with acks="all", idempotent where the cluster supports it (`start_producer`;
    Tansu, the embedded broker, refuses it; smartroute's no-duplicate guarantees never rely on it).
    """

    def __init__(
        self,
        cfg: KafkaConfig,
        *,
        buffer_size: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        size = cfg.send_buffer if buffer_size is None else buffer_size
        if size < 1:
            raise ValueError(f"buffer_size must be ≥ 1, got {size}")
        self._cfg = cfg
        self._buffer_size = size
        self._linger_s = cfg.linger_ms / 1000
        self._clock = clock
        # publish() enforces the bound on the buffer plus what the drain task holds (`_in_hand`).
        self._buffer: deque[Message] = deque()
        self._in_hand = 0  # taken by the drain task, not yet handed to the producer nor failed
        self._wake = asyncio.Event()  # set when the buffer stops being empty, and by close()
        self._producer: Producer | None = None
        self._idempotent = False
        self._known_topics: set[str] = set()
        self._key_partitions = KeyPartitions()
        self._overflow_log: dict[str, tuple[float, int]] = {}  # topic → (last logged at, refused since)
        self._drain_task: asyncio.Task[None] | None = None
        self._drain_done = asyncio.Event()
        self._in_flight = 0  # messages handed to the producer whose delivery outcome is not counted yet
        self._all_delivered = asyncio.Event()
        self._all_delivered.set()
        self._closing = False
        self._closed = asyncio.Event()
        track_send_buffer(self)

    @property
    def buffered(self) -> int:
        """Return how many messages are held and not yet handed to the producer (the send-buffer gauge)."""
        return len(self._buffer) + self._in_hand

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect the producer; raise KafkaUnavailable if no bootstrap server answers within the timeout."""
        if self._producer is not None or self._closing:
            raise RuntimeError("Publisher.start() may be called once, before close()")
        self._producer, self._idempotent = await start_producer(
            self._cfg,
            linger_ms=0,  # every batch is handed over complete; run() lingers for linger_ms instead
            max_batch_size=MAX_BATCH_SIZE,
            max_request_size=MAX_REQUEST_SIZE,
            compression_type=None,
        )

    @property
    def idempotent(self) -> bool:
        """Tell whether the producer is idempotent (False before start, or on a broker without it)."""
        return self._idempotent

    async def send_and_wait(self, messages: Iterable[Message]) -> None:
        """Send `messages` past the buffer and return once the broker acknowledged every one.

        For a caller that must know each message landed before it goes on (the router service
        commits its offsets only then): a failure raises KafkaError, and nothing is counted as
        refused, since the caller decides what to do about it. A topic this principal may not
        write raises KafkaAccessDenied instead, naming it: retrying cannot help, so it is fatal.
        """
        producer = self._producer
        if producer is None:
            raise RuntimeError("Publisher.send_and_wait() needs start() first")
        messages = list(messages)
        try:
            deliveries = [await producer.send(topic, value, key=key) for topic, key, value in messages]
            await asyncio.gather(*deliveries)
        except AUTHORIZATION_ERRORS as exc:
            raise denied(exc, self._cfg, "WRITE", topics=sorted({m[0] for m in messages})) from exc

    def publish(self, topic: str, key: bytes | None, value: bytes) -> bool:
        """Buffer one message to send; return False (counted and logged) if the buffer is full or closed."""
        if topic not in self._known_topics:
            if not _TOPIC_RE.fullmatch(topic):
                raise ValueError(f"not a valid Kafka topic name: {topic!r}")
            self._known_topics.add(topic)
        if self._closing:
            KAFKA_MESSAGES_UNSENT.labels(topic, "closed").inc()
            log.warning("kafka_publish_after_close", topic=topic, key=_key_text(key))
            return False
        waiting = len(self._buffer)
        if waiting + self._in_hand >= self._buffer_size:
            KAFKA_BUFFER_OVERFLOW.labels(topic).inc()
            self._log_overflow(topic, key)
            return False
        self._buffer.append((topic, key, value))
        if not waiting:
            self._wake.set()  # the drain task waits only on an empty buffer
        return True

    def _log_overflow(self, topic: str, key: bytes | None) -> None:
        now = self._clock()
        last, refused = self._overflow_log.get(topic, (None, 0))
        if last is not None and now - last < _OVERFLOW_LOG_INTERVAL_S:
            self._overflow_log[topic] = (last, refused + 1)
            return
        self._overflow_log[topic] = (now, 0)
        log.warning(
            "kafka_buffer_overflow",
            topic=topic,
            key=_key_text(key),
            buffer_size=self._buffer_size,
            refused_since_last_log=refused,
        )

    async def run(self) -> None:
        """Drain the buffer into the producer until close(); the caller owns this task (e.g. a TaskGroup)."""
        producer = self._producer
        if producer is None:
            raise RuntimeError("Publisher.run() needs start() first")
        if self._drain_task is not None:
            raise RuntimeError("Publisher.run() is already running")
        if self._closing:
            return  # close() drains the buffer itself when no drain task is running
        self._drain_task = asyncio.current_task()
        self._drain_done.clear()
        try:
            # Once closing, publish() refuses: the buffer only shrinks, and an empty one ends the task.
            while self._buffer or not self._closing:
                if not self._buffer:
                    self._wake.clear()
                    await self._wake.wait()
                    if self._linger_s and not self._closing:
                        await asyncio.sleep(self._linger_s)  # let the burst that woke us gather into batches
                    continue
                await self._send(producer, self._take())
                await asyncio.sleep(0)  # a pass may not have yielded: let publishers and the rest run
        finally:
            self._drain_task = None
            self._drain_done.set()

    def _take(self) -> list[Message]:
        buffer = self._buffer
        if len(buffer) <= _MAX_TAKE:
            chunk = list(buffer)
            buffer.clear()
        else:
            chunk = [buffer.popleft() for _ in range(_MAX_TAKE)]
        self._in_hand += len(chunk)
        return chunk

    async def _send(self, producer: Producer, chunk: list[Message]) -> None:
        """Hand `chunk` to the producer as record batches; count what fails now, or all if cancelled."""
        try:
            try:
                routes = await self._routes(producer, chunk)
            except asyncio.CancelledError:
                self._count_unsent(Counter(topic for topic, _, _ in chunk))
                raise
            batches, failures = build(chunk, routes, producer.create_batch)
            for failure in failures:
                self._in_hand -= failure.count
                self._on_failure(failure.topic, failure.first_key, failure.count, failure.error)
            await self._submit(producer, batches)
        finally:
            self._in_hand = 0

    async def _routes(self, producer: Producer, chunk: list[Message]) -> dict[str, Route]:
        """Return each topic's route; count a topic's messages as failed if its metadata cannot be had."""
        routes: dict[str, Route] = {}
        failed: dict[str, KafkaError] = {}
        for topic in {topic for topic, _, _ in chunk}:
            try:
                # What send() awaits first: the topic's metadata, fetched once (Tansu creates the topic).
                partitions = await producer.partitions_for(topic)
            except KafkaError as exc:
                failed[topic] = exc
                continue
            available = producer.client.cluster.available_partitions_for_topic(topic) or ()
            routes[topic] = self._key_partitions.route(topic, partitions, available)
        for topic, error in failed.items():  # after every await: a cancellation counts the chunk once
            keys = [key for message_topic, key, _ in chunk if message_topic == topic]
            self._in_hand -= len(keys)
            self._on_failure(topic, keys[0], len(keys), error)
        return routes

    async def _submit(self, producer: Producer, batches: list[Batch]) -> None:
        """Queue each batch in aiokafka (per partition in order) with one callback counting its outcome."""
        for i, batch in enumerate(batches):
            batch.builder.close()  # complete: aiokafka sends it without lingering, nothing else joins it
            try:
                delivery = await producer.send_batch(batch.builder, batch.topic, partition=batch.partition)
            except asyncio.CancelledError:
                self._count_unsent(count_by_topic(batches[i:]))
                raise
            except KafkaError as exc:
                self._on_failure(batch.topic, batch.first_key, batch.count, exc)
            else:
                self._in_flight += batch.count
                self._all_delivered.clear()
                delivery.add_done_callback(
                    partial(self._on_delivery, batch.topic, batch.first_key, batch.count)
                )
            finally:
                self._in_hand -= batch.count

    def _on_delivery(
        self, topic: str, first_key: bytes | None, count: int, delivery: asyncio.Future[object]
    ) -> None:
        self._in_flight -= count
        if self._in_flight == 0:
            self._all_delivered.set()
        if delivery.cancelled():
            self._on_failure(topic, first_key, count, asyncio.CancelledError("delivery cancelled"))
        elif (exc := delivery.exception()) is not None:
            self._on_failure(topic, first_key, count, exc)
        else:
            KAFKA_MESSAGES_SENT.labels(topic).inc(count)

    def _on_failure(self, topic: str, first_key: bytes | None, count: int, exc: BaseException) -> None:
        """Count `count` messages of `topic` as produce errors, in one log event naming the first key."""
        KAFKA_PRODUCE_ERRORS.labels(topic).inc(count)
        log.error(
            "kafka_delivery_failed", topic=topic, key=_key_text(first_key), messages=count, error=repr(exc)
        )

    async def close(self, timeout_s: float = _DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Stop intake, send what is buffered, flush and stop the producer; later calls wait, then return.

        Draining and flushing get `timeout_s`; what is still buffered then is counted and
        logged as unsent. Deliveries already in flight end within the producer's
        request_timeout_ms while it stops, each counted as sent or failed.
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            async with asyncio.timeout(timeout_s):
                await self._drain_remaining()
        except TimeoutError:
            log.warning("kafka_close_timeout", timeout_s=timeout_s, in_flight=self._in_flight)
        finally:
            await self._stop_drain_task()
            self._drop_buffered()
            if self._producer is not None:
                await self._stop_producer()
            self._closed.set()
            log.info("kafka_producer_closed")

    async def _drain_remaining(self) -> None:
        if self._producer is None:
            return  # never started: nothing can be sent, and _drop_buffered accounts for it
        if self._drain_task is not None:
            self._wake.set()  # run() sends everything buffered, then sees `_closing` and returns
            await self._drain_done.wait()
        while self._buffer:  # no drain task ran, or it was cancelled part-way
            await self._send(self._producer, self._take())
        await self._producer.flush()
        await self._all_delivered.wait()  # every delivery callback has counted its outcome

    async def _stop_producer(self) -> None:
        assert self._producer is not None
        await self._producer.stop()  # in-flight deliveries end here, within request_timeout_ms
        try:
            # Their futures are resolved now; this lets the queued callbacks count each outcome.
            async with asyncio.timeout(_CALLBACK_GRACE_S):
                await self._all_delivered.wait()
        except TimeoutError:
            log.error("kafka_deliveries_unresolved", in_flight=self._in_flight)

    async def _stop_drain_task(self) -> None:
        task = self._drain_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await self._drain_done.wait()

    def _drop_buffered(self) -> None:
        left = Counter(topic for topic, _, _ in self._buffer)
        self._buffer.clear()
        self._count_unsent(left)

    def _count_unsent(self, by_topic: Counter[str], reason: UnsentReason = "shutdown") -> None:
        for topic, count in by_topic.items():
            KAFKA_MESSAGES_UNSENT.labels(topic, reason).inc(count)
        if by_topic:
            log.error(
                "kafka_messages_unsent", reason=reason, messages=by_topic.total(), by_topic=dict(by_topic)
            )
