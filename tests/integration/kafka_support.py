"""Kafka helpers of the integration tests: creating topics, reading them back from the first offset.

Apache Kafka (one of the two brokers every Kafka test runs on) does not auto-create topics, so
tests create theirs: `create_contract_topics` for a daemon's, `create_topics_now` from sync code.

Consumer groups on Tansu get their partitions only after about half of the
session timeout; a consumer without a group takes every partition at once, and
a short metadata refresh lets it find a topic created after it started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from daemon.app import Daemon
from daemon.config import Config, build_config, load_config
from daemon.kafka.topics import create_topics
from faults.orders import serving_router as run_router

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


class TopicReader:
    """Collect every record of one topic from its beginning, also for a topic created later."""

    def __init__(self, bootstrap: str, topic: str, client: Mapping[str, object] | None = None) -> None:
        """Read `topic` at `bootstrap`; `client` adds aiokafka options (TLS, SASL: `client_options`)."""
        self.topic = topic
        self.records: list[Record] = []
        options: dict[str, object] = {"bootstrap_servers": bootstrap, "request_timeout_ms": 5000}
        self._consumer = AIOKafkaConsumer(
            topic,
            **(options | dict(client or {})),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=200,
        )

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> list[Record]:
        """Fetch what arrived since the last poll (nothing while the topic does not exist yet)."""
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        fresh = [r for batch in batches.values() for r in batch]
        self.records.extend(fresh)
        return fresh

    async def wait_for(self, predicate: Callable[[Record], bool], timeout_s: float = 10.0) -> Record:
        """Return the first record (already read or arriving) that satisfies `predicate`."""
        for record in self.records:
            if predicate(record):
                return record
        async with asyncio.timeout(timeout_s):
            while True:
                for record in await self.poll():
                    if predicate(record):
                        return record

    async def read(self, count: int, timeout_s: float = 10.0, settle_ms: int = 300) -> list[Record]:
        """Read until `count` records are held, then a short while longer to catch strays or duplicates."""
        async with asyncio.timeout(timeout_s):
            while len(self.records) < count:
                await self.poll()
        await self.poll(settle_ms)
        return self.records


async def read_back(bootstrap: str, topic: str, count: int) -> list[Record]:
    """Read `count` records of `topic` from the beginning (and any extra that follow at once)."""
    async with TopicReader(bootstrap, topic) as reader:
        return await reader.read(count)


def serving_router(cfg: Config) -> AbstractAsyncContextManager[Daemon]:
    """Run a daemon with the feeds and route roles until the block ends; yield it once reconciled.

    The fault suite's (`faults.orders.serving_router`): reconciled within 10 s, stopped within 15 s.
    """
    return run_router(cfg, 10.0, stop_timeout_s=15.0)


def daemon_toml(bootstrap: str, prefix: str, state_dir: Path) -> str:
    """Return the `[daemon]` and `[kafka]` tables a test daemon starts with: no HTTP port, its own state."""
    return (
        f'[daemon]\nhttp_port = 0\nstate_dir = "{state_dir}"\n\n'
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic_prefix = "{prefix}"\n'
    )


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for an effect of real network I/O (there is no clock to inject for a peer's reply)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - a value moved by a callback; nothing to await
            await asyncio.sleep(0.01)


def create_topics_now(bootstrap: str, names: list[str], partitions: int = 1, timeout_s: float = 30.0) -> None:
    """Create `names` (synchronously, from a sync fixture); a topic that already exists is fine."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"cannot create topic {name} on {bootstrap}: {exc}") from exc


async def create_contract_topics(bootstrap: str, prefix: str, **topics: object) -> None:
    """Create the contract's topics under `prefix`, as `smartroute topics create` does; fail if it cannot.

    `topics` are `[topics]` settings for this test's topics (default: one partition each).
    """
    kafka = {"bootstrap_servers": bootstrap, "topic_prefix": prefix}
    cfg = build_config({"kafka": kafka, "topics": {"partitions": 1} | topics}, {})
    states = await create_topics(cfg.kafka, cfg.topics)
    refused = [state.line() for state in states if state.status not in ("created", "ok")]
    assert not refused, refused


async def create_daemon_topics(config: Path) -> None:
    """Create the topics of the daemon configured by the file `config` (one partition each)."""
    cfg = load_config(config, environ={})
    await create_contract_topics(",".join(cfg.kafka.bootstrap_servers), cfg.kafka.topic_prefix)
