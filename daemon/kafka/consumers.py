"""The one way to build a Kafka consumer, and what every consumer loop shares.

    consumer = new_consumer(cfg.kafka, topic)                                   # group-less, from the start
    consumer = new_consumer(cfg.kafka, topic, group=Group(id, session_timeout_ms))  # a consumer group
    consumer = new_consumer(cfg.kafka, topic, group=group, on_revoked=commit_answered)  # told first
    if not await start_unless_stopped(consumer, stop): return
    await record_consumer_lag(consumer, topic, group_id)

What differs between smartroute's consumers is a keyword: the group (none: every partition,
offsets never committed), where a partition without a committed offset starts (`offsets`),
how long an empty fetch waits at the broker, and how soon a newly created topic is noticed.
A group member can be told which partitions a rebalance takes from it before they go
(`on_revoked`, awaited by the rebalance): the place to commit what it already finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, KafkaConnectionError

from daemon.config import KafkaConfig
from daemon.kafka.access import AUTHORIZATION_ERRORS, denied, unreachable
from daemon.kafka.settings import client_options
from daemon.metrics import KAFKA_CONSUMER_LAG

Offsets = Literal["earliest", "latest"]
# on_revoked(partitions): awaited by a rebalance before `partitions` are taken from this member
Revoked = Callable[[frozenset[TopicPartition]], Awaitable[None]]

# aiokafka's defaults, kept where a consumer does not say otherwise.
DEFAULT_FETCH_MAX_WAIT_MS: Final = 500
DEFAULT_METADATA_MAX_AGE_MS: Final = 300_000


@dataclass(frozen=True, slots=True)
class Group:
    """A consumer group to join: its id, session timeout, and whether offsets are committed automatically."""

    id: str
    session_timeout_ms: int
    auto_commit: bool = False

    @property
    def heartbeat_interval_ms(self) -> int:
        """Return the heartbeat interval: a tenth of the session timeout, at least 100 ms."""
        return max(100, self.session_timeout_ms // 10)


class Consumer(AIOKafkaConsumer):  # type: ignore[misc]  # aiokafka's consumer has no type hints
    """aiokafka's consumer, saying what a secured cluster refused: the login, a group or topic ACL.

    `start()` and `getmany()` raise KafkaAccessDenied naming the group or topics and the READ ACL
    needed, and a refused SASL login as such, instead of aiokafka's bare errors.
    """

    def __init__(self, cfg: KafkaConfig, *topics: str, **options: Any) -> None:
        super().__init__(*topics, **options)
        self.kafka_config = cfg
        self.group_id: str | None = options.get("group_id")

    async def start(self) -> None:
        """Connect (and join the group, if any), mapping refusals to smartroute's errors."""
        try:
            await super().start()
        except KafkaConnectionError as exc:
            raise await unreachable(self.kafka_config, client_options(self.kafka_config), exc) from exc
        except AUTHORIZATION_ERRORS as exc:
            raise self._denied(exc) from exc

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        """Fetch as aiokafka does; a topic or group the principal may not read raises KafkaAccessDenied."""
        try:
            return await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        except AUTHORIZATION_ERRORS as exc:
            raise self._denied(exc) from exc

    def _denied(self, exc: Exception) -> Exception:
        if isinstance(exc, GroupAuthorizationFailedError):
            return denied(exc, self.kafka_config, "READ", group=self.group_id)
        topics = sorted(self.subscription()) or sorted({tp.topic for tp in self.assignment()})
        return denied(exc, self.kafka_config, "READ", topics=topics)


def new_consumer(
    cfg: KafkaConfig,
    *topics: str,
    group: Group | None = None,
    offsets: Offsets = "earliest",
    fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS,
    metadata_max_age_ms: int = DEFAULT_METADATA_MAX_AGE_MS,
    on_revoked: Revoked | None = None,
) -> Consumer:
    """Return an unstarted consumer of `topics` (none: assign or subscribe later) with `cfg`'s settings.

    Without a group it reads every partition and commits nothing; with one, offsets are committed
    by the caller unless `group.auto_commit`; `on_revoked` (a group only) is awaited before a
    rebalance takes partitions away.
    """
    options: dict[str, object] = {
        **client_options(cfg),
        "auto_offset_reset": offsets,
        "fetch_max_wait_ms": fetch_max_wait_ms,
        "metadata_max_age_ms": metadata_max_age_ms,
    }
    if group is None:
        options |= {"group_id": None, "enable_auto_commit": False}
    else:
        options |= {
            "group_id": group.id,
            "enable_auto_commit": group.auto_commit,
            "session_timeout_ms": group.session_timeout_ms,
            "heartbeat_interval_ms": group.heartbeat_interval_ms,
        }
    if on_revoked is None:
        return Consumer(cfg, *topics, **options)
    if group is None or not topics:
        raise ValueError("on_revoked needs a group and topics to subscribe to")
    consumer = Consumer(cfg, **options)
    consumer.subscribe(topics=list(topics), listener=_Revocations(on_revoked))
    return consumer


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka has no type hints
    """Tell the consumer's owner which partitions a rebalance takes away, before they go."""

    def __init__(self, on_revoked: Revoked) -> None:
        self._on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._on_revoked(frozenset(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        """Nothing to do: a partition starts from its committed offset."""


async def start_unless_stopped(consumer: Consumer, stop: asyncio.Event) -> bool:
    """Start `consumer` (a group join can take seconds); give up at once if `stop` is set meanwhile."""
    starting = asyncio.ensure_future(consumer.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not starting.done():
            starting.cancel()
    if starting.done() and not starting.cancelled() and starting.exception() is None:
        return True
    await asyncio.gather(starting, return_exceptions=True)
    await consumer.stop()
    if not stop.is_set():
        await starting  # it failed on its own: let the error propagate
    return False


async def record_consumer_lag(consumer: Consumer, topic: str, group: str) -> int:
    """Set the lag gauge from the assigned partitions' high-water marks; return the lag."""
    lag = 0
    for partition in consumer.assignment():
        highwater = consumer.highwater(partition)
        if highwater is None:
            continue  # nothing fetched from this partition yet: its end is unknown
        lag += max(0, highwater - await consumer.position(partition))
    KAFKA_CONSUMER_LAG.labels(topic=topic, group=group).set(lag)
    return lag
