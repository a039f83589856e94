"""Kafka client settings, and the Publisher: a bounded, never-blocking buffer drained into aiokafka.

    publisher = Publisher(cfg.kafka)
    await publisher.start()                       # KafkaUnavailable if no bootstrap server answers
    async with asyncio.TaskGroup() as tg:
        tg.create_task(publisher.run())           # the drain task; returns once close() has drained
        publisher.publish(topic, key, value)      # synchronous: True if buffered, False if refused
        ...
        await publisher.close(timeout_s)          # stop intake, drain, flush, stop the producer

Nothing is dropped silently: every message ends as sent, a produce error, an overflow or an
unsent-at-close, each with its counter in `daemon.metrics` and a log event naming topic and key.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from types import TracebackType
from typing import Final, Self

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.helpers import create_ssl_context

from daemon.config_schema import KafkaConfig
from daemon.errors import ConfigError, KafkaUnavailable
from daemon.metrics import (
    KAFKA_BUFFER_OVERFLOW,
    KAFKA_MESSAGES_SENT,
    KAFKA_MESSAGES_UNSENT,
    KAFKA_PRODUCE_ERRORS,
    KAFKA_SEND_BUFFER,
    UNSENT_REASONS,
    UnsentReason,
)

log = structlog.get_logger(__name__)

_TOPIC_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,249}")
_OVERFLOW_LOG_INTERVAL_S: Final = 1.0
_DEFAULT_CLOSE_TIMEOUT_S: Final = 10.0
_CALLBACK_GRACE_S: Final = 1.0

_Message = tuple[str, bytes | None, bytes]


def client_options(cfg: KafkaConfig) -> dict[str, object]:
    """Return the keyword arguments of aiokafka clients for `cfg` (with the SASL password: never log them)."""
    options: dict[str, object] = {
        "bootstrap_servers": list(cfg.bootstrap_servers),
        "client_id": cfg.client_id,
        "security_protocol": cfg.security_protocol,
        "request_timeout_ms": cfg.request_timeout_ms,
    }
    if cfg.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = cfg.sasl_mechanism
        options["sasl_plain_username"] = cfg.sasl_username
        options["sasl_plain_password"] = None if cfg.sasl_password is None else cfg.sasl_password.reveal()
    if cfg.security_protocol.endswith("SSL"):
        options["ssl_context"] = _ssl_context(cfg)
    return options


def _ssl_context(cfg: KafkaConfig) -> ssl.SSLContext:
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=cfg.ssl_cafile, certfile=cfg.ssl_certfile, keyfile=cfg.ssl_keyfile
        )
    except (OSError, ssl.SSLError) as exc:
        files = {
            "ssl_cafile": cfg.ssl_cafile,
            "ssl_certfile": cfg.ssl_certfile,
            "ssl_keyfile": cfg.ssl_keyfile,
        }
        named = ", ".join(f"kafka.{k}={v}" for k, v in files.items() if v is not None) or "system CAs"
        raise ConfigError(f"kafka TLS settings cannot be loaded ({named}): {exc}") from exc
    context.check_hostname = cfg.ssl_check_hostname
    return context


def init_publisher_metrics(topics: Iterable[str]) -> None:
    """Create every publisher series for `topics` at zero, so dashboards and alerts see them from start."""
    for topic in topics:
        for counter in (KAFKA_MESSAGES_SENT, KAFKA_PRODUCE_ERRORS, KAFKA_BUFFER_OVERFLOW):
            counter.labels(topic)
        for reason in UNSENT_REASONS:
            KAFKA_MESSAGES_UNSENT.labels(topic, reason)


def _key_text(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", "backslashreplace")


class Publisher:
    """Publish to Kafka without ever blocking the caller: a bounded buffer, drained by `run()`.

    The producer runs with acks="all" and no idempotence (Tansu, the test broker, refuses
    InitProducerId; smartroute's no-duplicate guarantees never rely on it).
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
        self._clock = clock
        # Unbounded on purpose: publish() enforces the bound, so close() can always add its stop marker.
        self._queue: asyncio.Queue[_Message | None] = asyncio.Queue()
        self._producer: AIOKafkaProducer | None = None
        self._known_topics: set[str] = set()
        self._overflow_log: dict[str, tuple[float, int]] = {}  # topic → (last logged at, refused since)
        self._drain_task: asyncio.Task[None] | None = None
        self._drain_done = asyncio.Event()
        self._in_flight = 0
        self._all_delivered = asyncio.Event()
        self._all_delivered.set()
        self._closing = False
        self._closed = asyncio.Event()

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
        producer = AIOKafkaProducer(
            **client_options(self._cfg),
            acks="all",
            enable_idempotence=False,
            linger_ms=self._cfg.linger_ms,
            compression_type=None,
        )
        try:
            await producer.start()
        except BaseException as exc:
            await producer.stop()  # else aiokafka leaks its connections and warns "Unclosed AIOKafkaProducer"
            if isinstance(exc, KafkaConnectionError):
                servers = ",".join(self._cfg.bootstrap_servers)
                raise KafkaUnavailable(f"no Kafka broker answered at {servers}: {exc}") from exc
            raise
        self._producer = producer
        log.info("kafka_producer_started", bootstrap_servers=list(self._cfg.bootstrap_servers))

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
        if self._queue.qsize() >= self._buffer_size:
            KAFKA_BUFFER_OVERFLOW.labels(topic).inc()
            self._log_overflow(topic, key)
            return False
        self._queue.put_nowait((topic, key, value))
        KAFKA_SEND_BUFFER.inc()
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
        if self._producer is None:
            raise RuntimeError("Publisher.run() needs start() first")
        if self._drain_task is not None:
            raise RuntimeError("Publisher.run() is already running")
        if self._closing:
            return  # close() drains the buffer itself when no drain task is running
        self._drain_task = asyncio.current_task()
        self._drain_done.clear()
        try:
            while (message := await self._queue.get()) is not None:
                KAFKA_SEND_BUFFER.dec()
                await self._send(self._producer, message)
        finally:
            self._drain_task = None
            self._drain_done.set()

    async def _send(self, producer: AIOKafkaProducer, message: _Message) -> None:
        topic, key, value = message
        try:
            # Hands the message to aiokafka's accumulator; delivery is awaited by the callback, not here.
            delivery = await producer.send(topic, value, key=key)
        except asyncio.CancelledError:
            self._count_unsent(Counter({topic: 1}))
            raise
        except KafkaError as exc:
            self._on_failure(topic, key, exc)
            return
        self._in_flight += 1
        self._all_delivered.clear()
        delivery.add_done_callback(partial(self._on_delivery, topic, key))

    def _on_delivery(self, topic: str, key: bytes | None, delivery: asyncio.Future[object]) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._all_delivered.set()
        if delivery.cancelled():
            self._on_failure(topic, key, asyncio.CancelledError("delivery cancelled"))
        elif (exc := delivery.exception()) is not None:
            self._on_failure(topic, key, exc)
        else:
            KAFKA_MESSAGES_SENT.labels(topic).inc()

    def _on_failure(self, topic: str, key: bytes | None, exc: BaseException) -> None:
        KAFKA_PRODUCE_ERRORS.labels(topic).inc()
        log.error("kafka_delivery_failed", topic=topic, key=_key_text(key), error=repr(exc))

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
            self._queue.put_nowait(None)  # run() sends everything ahead of this marker, then returns
            await self._drain_done.wait()
        while not self._queue.empty():  # no drain task ran, or it was cancelled part-way
            message = self._queue.get_nowait()
            if message is not None:
                KAFKA_SEND_BUFFER.dec()
                await self._send(self._producer, message)
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
        left: Counter[str] = Counter()
        while not self._queue.empty():
            message = self._queue.get_nowait()
            if message is not None:
                KAFKA_SEND_BUFFER.dec()
                left[message[0]] += 1
        self._count_unsent(left)

    def _count_unsent(self, by_topic: Counter[str], reason: UnsentReason = "shutdown") -> None:
        for topic, count in by_topic.items():
            KAFKA_MESSAGES_UNSENT.labels(topic, reason).inc(count)
        if by_topic:
            log.error(
                "kafka_messages_unsent", reason=reason, messages=by_topic.total(), by_topic=dict(by_topic)
            )
