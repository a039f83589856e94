"""The consumer-group behaviour the router relies on, with a real router process killed and restarted.

Offsets are committed only after the broker acknowledged the batch's results: a router killed
between the two has its batch delivered again, and answers it again from the ledger with the
same result, executing nothing twice. A router that leaves the group and rejoins resumes from
its last committed offset: nothing before it is read again, nothing after it is missed.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka_support import TopicReader, create_contract_topics
from test_router_service import Env, order, run_child, write_config

from connectors.sim import ExchangeSimulator
from daemon.client import send
from daemon.config import load_config

pytestmark = pytest.mark.integration


@pytest.fixture
async def env(embedded_broker: str, tmp_path: Path) -> AsyncIterator[Env]:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    config_path = tmp_path / "smartroute.toml"
    async with ExchangeSimulator(("binance", "bybit"), ("BTC-USDT",), seed=11) as sim:
        write_config(config_path, embedded_broker, prefix, sim, tmp_path / "state")
        cfg = load_config(config_path, environ={})
        async with (
            TopicReader(embedded_broker, f"{prefix}results") as results,
            TopicReader(embedded_broker, f"{prefix}dlq") as dlq,
        ):
            yield Env(cfg, config_path, embedded_broker, prefix, results, dlq)


async def committed(env: Env) -> int | None:
    """Return the router group's committed offset on partition 0 of the orders topic (None: none).

    An OffsetFetch from a consumer that never subscribes: it reads the group's offsets, not joining it.
    """
    reader = AIOKafkaConsumer(
        bootstrap_servers=env.bootstrap, group_id=env.cfg.router.group_id, enable_auto_commit=False
    )
    await reader.start()
    try:
        return await reader.committed(TopicPartition(env.cfg.topic("orders"), 0))  # type: ignore[no-any-return]
    finally:
        await reader.stop()


async def committed_reaches(env: Env, offset: int, timeout_s: float = 15.0) -> None:
    """Wait until the group's committed offset is `offset`: the commit follows the acknowledged results."""
    async with asyncio.timeout(timeout_s):
        while await committed(env) != offset:  # noqa: ASYNC110 - a broker has no offset-change event
            await asyncio.sleep(0.05)


def answers(env: Env, key: bytes) -> list[bytes]:
    return [r.value for r in env.results.records if r.key == key]


async def stop(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        child.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        await child.wait()


async def test_killed_between_acknowledged_results_and_the_commit_the_batch_is_answered_again_identically(
    env: Env, tmp_path: Path
) -> None:
    sent_log = tmp_path / "sent.log"
    child = await run_child(env, sent_log, crash_after="acked:k1")
    try:
        await send(env.cfg.kafka, env.cfg.topic("orders"), b"k1", order("k1"))
        async with asyncio.timeout(30):
            assert await child.wait() == -signal.SIGKILL  # killed itself after the ack, before the commit
    finally:
        await stop(child)
    first = await env.results.wait_for(lambda r: r.key == b"k1", timeout_s=10)  # it was acknowledged
    assert await committed(env) is None  # ... and the offset was not committed

    restarted = await run_child(env, sent_log, crash_after=None)
    try:
        await env.results.wait_for(lambda r: r.key == b"k1" and r.offset > first.offset, timeout_s=30)
        await committed_reaches(env, 1)
    finally:
        await stop(restarted)
    assert answers(env, b"k1") == [first.value, first.value]  # the same result, delivered again
    assert [line.split()[0] for line in sent_log.read_text().splitlines()] == ["k1"]  # executed once


async def test_a_router_that_leaves_and_rejoins_resumes_from_its_last_committed_offset(
    env: Env, tmp_path: Path
) -> None:
    sent_log = tmp_path / "sent.log"
    child = await run_child(env, sent_log, crash_after=None)
    try:
        for key in (b"k1", b"k2"):
            await send(env.cfg.kafka, env.cfg.topic("orders"), key, order(key.decode()))
            await env.results.wait_for(lambda r, key=key: r.key == key, timeout_s=30)
    finally:
        await stop(child)
    assert child.returncode == 0
    assert await committed(env) == 2

    await send(env.cfg.kafka, env.cfg.topic("orders"), b"k3", order("k3"))  # while no router is in the group
    rejoined = await run_child(env, sent_log, crash_after=None)
    try:
        await env.results.wait_for(lambda r: r.key == b"k3", timeout_s=30)
        await committed_reaches(env, 3)
    finally:
        await stop(rejoined)
    # Results keep the order of the requests: a re-read of k1 or k2 would have been answered before k3.
    assert [len(answers(env, key)) for key in (b"k1", b"k2", b"k3")] == [1, 1, 1]
    assert [line.split()[0] for line in sent_log.read_text().splitlines()] == ["k1", "k2", "k3"]
