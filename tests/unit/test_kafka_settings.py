"""Kafka client options from the config, and the Publisher's behaviour that needs no broker."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from daemon.config import KafkaConfig, Secret
from daemon.errors import ConfigError
from daemon.kafka import Publisher, client_options, init_publisher_metrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def new_topic() -> str:
    return f"unit.{uuid.uuid4().hex}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key, made with the openssl command line."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    request = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=kafka.test",
    ]
    subprocess.run(
        [*request, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


# --- client_options --------------------------------------------------------------------------------


def test_plaintext_options_carry_servers_client_id_and_timeout_only() -> None:
    cfg = KafkaConfig(bootstrap_servers=("k1:9092", "k2:9092"), client_id="desk", request_timeout_ms=1234)
    assert client_options(cfg) == {
        "bootstrap_servers": ["k1:9092", "k2:9092"],
        "client_id": "desk",
        "security_protocol": "PLAINTEXT",
        "request_timeout_ms": 1234,
    }


def test_sasl_options_reveal_the_password_to_the_client() -> None:
    cfg = KafkaConfig(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="svc",
        sasl_password=Secret("s3cret"),
    )
    options = client_options(cfg)
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_username"] == "svc"
    assert options["sasl_plain_password"] == "s3cret"
    assert "ssl_context" not in options


def test_ssl_options_build_a_context_from_the_configured_files(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    cfg = KafkaConfig(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="svc",
        sasl_password=Secret("pw"),
        ssl_cafile=cert,
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_check_hostname=False,
    )
    context = client_options(cfg)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED
    subjects = [ca["subject"] for ca in context.get_ca_certs()]
    assert ((("commonName", "kafka.test"),),) in subjects


def test_ssl_without_files_verifies_hostnames_against_system_cas() -> None:
    context = client_options(KafkaConfig(security_protocol="SSL"))["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is True
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_an_unloadable_certificate_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(
        ConfigError, match=r"kafka TLS settings cannot be loaded \(kafka.ssl_cafile=.*bogus.pem\)"
    ):
        client_options(KafkaConfig(security_protocol="SSL", ssl_cafile=bogus))


# --- Publisher without a broker ---------------------------------------------------------------------


def test_the_buffer_size_defaults_to_the_configured_send_buffer() -> None:
    topic = new_topic()
    publisher = Publisher(KafkaConfig(send_buffer=2))
    assert [publisher.publish(topic, b"k", b"v") for _ in range(3)] == [True, True, False]
    assert sample("smartroute_kafka_buffer_overflow_total", topic=topic) == 1


def test_a_buffer_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="buffer_size"):
        Publisher(KafkaConfig(), buffer_size=0)


def test_an_invalid_topic_name_is_refused_at_publish() -> None:
    publisher = Publisher(KafkaConfig())
    with pytest.raises(ValueError, match="not a valid Kafka topic name"):
        publisher.publish("bad topic!", None, b"v")


def test_overflow_logs_are_rate_limited_per_topic_and_say_how_many_were_refused_between() -> None:
    clock = FakeClock()
    topic = new_topic()
    publisher = Publisher(KafkaConfig(), buffer_size=1, clock=clock)
    assert publisher.publish(topic, b"k0", b"v")
    with capture_logs() as logs:
        for i in range(1, 5):  # all within one second: only the first is logged
            assert not publisher.publish(topic, f"k{i}".encode(), b"v")
        clock.now += 1.0
        assert not publisher.publish(topic, b"k5", b"v")
    overflows = [e for e in logs if e["event"] == "kafka_buffer_overflow"]
    assert [(e["key"], e["refused_since_last_log"]) for e in overflows] == [("k1", 0), ("k5", 3)]
    assert all(e["topic"] == topic and e["buffer_size"] == 1 for e in overflows)
    assert sample("smartroute_kafka_buffer_overflow_total", topic=topic) == 5


async def test_closing_a_publisher_that_never_started_counts_its_buffer_as_unsent() -> None:
    topic = new_topic()
    publisher = Publisher(KafkaConfig())
    depth_before = sample("smartroute_kafka_send_buffer_messages")
    for i in range(3):
        assert publisher.publish(topic, str(i).encode(), b"v")
    assert sample("smartroute_kafka_send_buffer_messages") == depth_before + 3
    with capture_logs() as logs:
        await publisher.close()
    assert sample("smartroute_kafka_messages_unsent_total", topic=topic, reason="shutdown") == 3
    assert sample("smartroute_kafka_send_buffer_messages") == depth_before
    unsent = [e for e in logs if e["event"] == "kafka_messages_unsent"]
    assert unsent and unsent[0]["by_topic"] == {topic: 3}


async def test_publish_after_close_is_refused_counted_and_logged() -> None:
    topic = new_topic()
    publisher = Publisher(KafkaConfig())
    await publisher.close()
    with capture_logs() as logs:
        assert publisher.publish(topic, b"late", b"v") is False
    assert sample("smartroute_kafka_messages_unsent_total", topic=topic, reason="closed") == 1
    assert {
        "event": "kafka_publish_after_close",
        "topic": topic,
        "key": "late",
        "log_level": "warning",
    } in logs


async def test_run_before_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="start"):
        await Publisher(KafkaConfig()).run()


def test_init_publisher_metrics_creates_every_series_at_zero() -> None:
    topic = new_topic()
    init_publisher_metrics([topic])
    for name in (
        "smartroute_kafka_messages_sent_total",
        "smartroute_kafka_produce_errors_total",
        "smartroute_kafka_buffer_overflow_total",
    ):
        assert REGISTRY.get_sample_value(name, {"topic": topic}) == 0.0
    for reason in ("closed", "shutdown"):
        labels = {"topic": topic, "reason": reason}
        assert REGISTRY.get_sample_value("smartroute_kafka_messages_unsent_total", labels) == 0.0
    assert REGISTRY.get_sample_value("smartroute_kafka_send_buffer_messages") is not None


def test_the_kafka_clients_warnings_and_errors_are_counted_by_component() -> None:
    from daemon.metrics import KAFKA_CLIENT_ERRORS, watch_kafka_client_errors

    watch_kafka_client_errors()
    watch_kafka_client_errors()  # idempotent: one handler, each record counted once
    conn = KAFKA_CLIENT_ERRORS.labels("conn")
    before = conn._value.get()
    logging.getLogger("aiokafka.conn").warning("Unable to connect to node 2")
    logging.getLogger("aiokafka.conn").info("connected")  # not a fault
    logging.getLogger("aiokafka.conn").error("Connection closed")
    assert conn._value.get() - before == 2
