"""No stale requests through Kafka: what waited in the orders topic past max_request_age_ms is `expired`.

Requests are produced while no router runs, stamped (CreateTime, the producer's clock) a minute
in the past, as if the router had been down that long. When the router comes back it answers
each of them `rejected`/`expired` and executes none; a request produced after them executes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from contract import assert_valid
from kafka_support import TopicReader, create_contract_topics
from prometheus_client import REGISTRY

from connectors.sim import ExchangeSimulator
from daemon.apache_kafka import ApacheKafka
from daemon.app import Daemon
from daemon.config import Config, load_config

pytestmark = pytest.mark.integration

MAX_AGE_MS = 10_000
OLD = ("old-1", "old-2", "old-3")


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    # Autoplay keeps every quote fresh, as a live market would, so paper orders can fill.
    async with ExchangeSimulator(("binance", "bybit"), ("BTC-USDT",), seed=5) as simulator:
        yield simulator


def config(tmp_path: Path, bootstrap: str, prefix: str, sim: ExchangeSimulator) -> Config:
    path = tmp_path / "smartroute.toml"
    path.write_text(
        f'[daemon]\nhttp_port = 0\nstate_dir = "{tmp_path / "state"}"\n'
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic_prefix = "{prefix}"\n'
        f"[router]\nsession_timeout_ms = 2000\nmax_request_age_ms = {MAX_AGE_MS}\n"
        f'[venues.binance]\nsymbols = ["BTC-USDT"]\nws_url = "{sim.ws_url("binance")}"\n'
        f'[venues.bybit]\nsymbols = ["BTC-USDT"]\nws_url = "{sim.ws_url("bybit")}"\n'
    )
    return load_config(path, environ={})


def order(request_id: str) -> bytes:
    message = {"v": 1, "request_id": request_id, "user_id": "desk-1", "kind": "order"}
    return orjson.dumps(message | {"symbol": "BTC-USDT", "side": "buy", "quantity": "0.0005"})


def expired_count() -> float:
    labels = {"status": "rejected", "reject_code": "expired"}
    return REGISTRY.get_sample_value("smartroute_order_requests_total", labels) or 0.0


async def serve(cfg: Config, bootstrap: str, old: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Produce `old` a minute back in time with no router running, start one, then produce "fresh".

    Return every answer by request_id and the ledger's legs of each request.
    """
    orders = cfg.topic("orders")
    a_minute_ago_ms = time.time_ns() // 1_000_000 - 60_000
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all") as producer:
        for request_id in old:  # produced while no router runs, a minute before it comes back
            await producer.send_and_wait(
                orders, order(request_id), key=request_id.encode(), timestamp_ms=a_minute_ago_ms
            )
        daemon = Daemon(cfg, roles=frozenset({"feeds", "route"}))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop), name="router-under-test")
        try:
            async with TopicReader(bootstrap, cfg.topic("results")) as results:
                for request_id in old:
                    await results.wait_for(lambda r, rid=request_id: r.key == rid.encode(), timeout_s=20)
                await producer.send_and_wait(orders, order("fresh"), key=b"fresh")
                await results.wait_for(lambda r: r.key == b"fresh", timeout_s=20)
                answers = {r.key.decode(): orjson.loads(r.value) for r in results.records if r.key}
            assert daemon.router is not None
            legs = {rid: daemon.router.ledger.legs(rid) for rid in (*old, "fresh")}
        finally:
            stop.set()
            async with asyncio.timeout(15):
                await task
    for answer in answers.values():
        assert_valid("execution-result", answer)
    return answers, legs


async def test_requests_older_than_the_bound_when_the_router_returns_are_expired_and_none_executes(
    embedded_broker: str, tmp_path: Path, sim: ExchangeSimulator
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    before = expired_count()
    answers, legs = await serve(config(tmp_path, embedded_broker, prefix, sim), embedded_broker, OLD)
    for request_id in OLD:
        answer = answers[request_id]
        assert (answer["status"], answer["reject_code"]) == ("rejected", "expired"), answer
        assert "CreateTime (producer clock)" in answer["message"]
        assert "over max_request_age_ms 10000" in answer["message"]
        assert answer["fills"] == [] and legs[request_id] == []  # never sent: not even an intent
    assert answers["fresh"]["status"] == "filled", answers["fresh"]
    assert [leg.state for leg in legs["fresh"]] == ["settled"]
    assert expired_count() == before + len(OLD)


@pytest.mark.apache_kafka
async def test_on_a_log_append_time_topic_the_brokers_time_ages_a_request_not_the_producers(
    apache_kafka: ApacheKafka, tmp_path: Path, sim: ExchangeSimulator
) -> None:
    bootstrap = apache_kafka.bootstrap_servers
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(bootstrap, prefix)
    await asyncio.to_thread(log_append_time, bootstrap, f"{prefix}orders")
    # The producer stamps a minute back, but the broker stamps the time it appended: now.
    answers, legs = await serve(config(tmp_path, bootstrap, prefix, sim), bootstrap, ("appended",))
    assert answers["appended"]["status"] == "filled", answers["appended"]
    assert [leg.state for leg in legs["appended"]] == ["settled"]


def log_append_time(bootstrap: str, topic: str) -> None:
    """Make `topic` keep the broker's append time as each record's timestamp."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "message.timestamp.type", "LogAppendTime", incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    # The controller has the change; the broker applies it a moment later. Until it reports it, a
    # record would still keep the producer's CreateTime (seen on a loaded machine).
    deadline = time.monotonic() + 30
    while True:
        described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
        (entries,) = (future.result(timeout=30) for future in described.values())
        if entries["message.timestamp.type"].value == "LogAppendTime":
            return
        assert time.monotonic() < deadline, "the broker never applied message.timestamp.type=LogAppendTime"
        time.sleep(0.1)
