"""Durability on a 3-broker Apache Kafka cluster: a broker SIGKILLed and restarted under load.

Apache Kafka only: Tansu is one memory-only process, without replication or a broker to lose.
Topics have replication factor 3 and min.insync.replicas=2. While the daemon publishes
opportunities and its router answers a stream of order requests, the broker leading the orders
and results partitions is killed, then restarted. Every request a client got acknowledged gets
exactly one result (a redelivered request may be answered again, always identically), the daemon
stays up, every opportunity Kafka acknowledged can be read back, and the client faults it rode
through are counted (`smartroute_kafka_client_errors_total`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from kafka_support import TopicReader, create_contract_topics
from prerequisites import unavailable
from prometheus_client import REGISTRY
from test_router_service import order

from connectors.sim import ExchangeSimulator
from daemon.apache_kafka import ApacheKafka
from daemon.app import Daemon
from daemon.config import build_config
from daemon.kafka_jars import java_binary
from daemon.metrics import KAFKA_CLIENT_ERRORS

pytestmark = [pytest.mark.integration, pytest.mark.apache_kafka]

REQUESTS = 60
SEND_INTERVAL_S = 0.1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    if java_binary() is None:
        unavailable("Java 17+ is not installed; apt-get install -y openjdk-17-jre-headless maven")
    # A dead broker is fenced, and its partitions led elsewhere, after 2 s without a heartbeat.
    fast_failover = {"broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "250"}
    with ApacheKafka(
        brokers=3, log_dir=tmp_path_factory.mktemp("kafka-cluster"), properties=fast_failover, stop_grace_s=5
    ) as running:
        yield running


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def client_errors() -> float:
    return sum(
        sample.value
        for metric in KAFKA_CLIENT_ERRORS.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def leader_of(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    leader: int = described["partitions"][0]["leader"]
    return leader


@pytest.fixture
async def daemon(cluster: ApacheKafka, tmp_path: Path) -> AsyncIterator[Daemon]:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(
        cluster.bootstrap_servers, prefix, replication_factor=3, min_insync_replicas=2
    )
    async with ExchangeSimulator(
        ("binance", "bybit"), ("BTC-USDT",), seed=5, dislocation_probability=0.2
    ) as sim:
        cfg = build_config(
            {
                "daemon": {"http_port": 0, "state_dir": str(tmp_path / "state"), "shutdown_timeout_ms": 5000},
                "kafka": {
                    "bootstrap_servers": cluster.bootstrap_servers,
                    "topic_prefix": prefix,
                    "request_timeout_ms": 4000,
                },
                "detector": {"min_net_profit_bps": 0},
                "router": {"session_timeout_ms": 3000},
                "venues": {
                    v: {"symbols": ["BTC-USDT"], "ws_url": sim.ws_url(v)} for v in ("binance", "bybit")
                },
            },
            {},
        )
        running = Daemon(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(running.run(stop), name="daemon-under-test")
        try:
            async with asyncio.timeout(30):
                await running.started.wait()
            yield running
            assert not task.done(), "the daemon stopped while the cluster lost a broker"
        finally:
            stop.set()
            async with asyncio.timeout(30):
                await task


async def send_stream(bootstrap: str, topic: str, acknowledged: list[str]) -> None:
    """Send REQUESTS orders, one every SEND_INTERVAL_S; a send that fails is retried until acknowledged."""
    async with AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=4000
    ) as producer:
        for i in range(REQUESTS):
            request_id = f"r{i}"
            while True:
                try:
                    await producer.send_and_wait(
                        topic, orjson.dumps(order(request_id)), key=request_id.encode()
                    )
                    break
                except KafkaError:
                    continue  # the client's own retry: the router answers a request id once
            acknowledged.append(request_id)
            await asyncio.sleep(SEND_INTERVAL_S)  # the pace of the stream, not a wait for Kafka


async def test_a_broker_killed_and_restarted_under_load_loses_no_acknowledged_request(
    cluster: ApacheKafka, daemon: Daemon
) -> None:
    cfg = daemon.cfg
    bootstrap = cluster.bootstrap_servers
    acknowledged: list[str] = []
    async with TopicReader(bootstrap, cfg.topic("results")) as results:
        stream = asyncio.create_task(send_stream(bootstrap, cfg.topic("orders"), acknowledged))
        await results.read(10, timeout_s=60, settle_ms=0)
        victim = await leader_of(bootstrap, cfg.topic("results")) - 1  # node ids are 1-based
        errors_before = client_errors()
        cluster.kill(victim)
        answered_when_killed = len(results.records)
        await results.read(answered_when_killed + 10, timeout_s=60, settle_ms=0)
        await asyncio.to_thread(cluster.restart, victim)
        async with asyncio.timeout(120):
            await stream
        await results.read(REQUESTS, timeout_s=120)

        answers: dict[str, set[bytes]] = {}
        for record in results.records:
            answers.setdefault(orjson.loads(record.value)["request_id"], set()).add(record.value)
    assert sorted(answers) == sorted(acknowledged)
    assert {request_id: len(values) for request_id, values in answers.items() if len(values) != 1} == {}

    # The client's faults were counted, and every opportunity Kafka acknowledged can be read back.
    assert client_errors() > errors_before
    topic = cfg.topic("opportunities")
    acknowledged_opportunities = int(sample("smartroute_kafka_messages_sent_total", topic=topic))
    assert acknowledged_opportunities > 0
    async with TopicReader(bootstrap, topic) as opportunities:
        await opportunities.read(acknowledged_opportunities, timeout_s=60, settle_ms=0)
