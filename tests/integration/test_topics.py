"""`smartroute topics create|check` on both brokers, and a daemon that finds a topic missing."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from kafka_support import create_topics_now
from prerequisites import unavailable

from daemon.apache_kafka import ApacheKafka
from daemon.app import Daemon
from daemon.config import Config, build_config
from daemon.errors import TopicsMissing
from daemon.kafka.topics import TopicState, check_topics, create_topics, require_topics
from daemon.kafka_jars import java_binary

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NAMES = ("quotes", "opportunities", "orders", "results", "preferences", "control", "dlq")


def config(bootstrap: str, prefix: str, **topics: object) -> Config:
    return build_config(
        {"kafka": {"bootstrap_servers": bootstrap, "topic_prefix": prefix}, "topics": topics}, {}
    )


def statuses(states: list[TopicState]) -> dict[str, str]:
    return {state.spec.name: state.status for state in states}


async def smartroute(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.cli", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_create_makes_every_contract_topic_as_configured_and_check_then_finds_them_ok(
    embedded_broker: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    path = tmp_path / "smartroute.toml"
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{embedded_broker}"\ntopic_prefix = "{prefix}"\n'
        "[topics]\npartitions = 2\n[topics.retention_ms]\nquotes = 60000\n"
    )
    code, out, _ = await smartroute("topics", "check", "--config", str(path))
    assert code == 1
    assert out.splitlines() == [f"missing  {prefix}{name}" for name in NAMES]

    code, out, err = await smartroute("topics", "create", "--config", str(path))
    assert (code, err) == (0, ""), out
    assert out.splitlines() == [f"created  {prefix}{name}" for name in NAMES]

    code, out, _ = await smartroute("topics", "check", "--config", str(path))
    assert (code, out.splitlines()) == (0, [f"ok       {prefix}{name}" for name in NAMES])
    # A second create changes nothing and says all is well.
    code, out, _ = await smartroute("topics", "create", "--config", str(path))
    assert (code, out.splitlines()) == (0, [f"ok       {prefix}{name}" for name in NAMES])


async def test_check_reports_each_differing_setting_and_changes_nothing(embedded_broker: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    created = config(embedded_broker, prefix, partitions=2)
    assert set(statuses(await create_topics(created.kafka, created.topics)).values()) == {"created"}
    wanted = config(embedded_broker, prefix, partitions=3, retention_ms={"orders": 1000})
    states = {state.spec.name: state for state in await check_topics(wanted.kafka, wanted.topics)}
    assert states[f"{prefix}orders"].status == "differs"
    assert states[f"{prefix}orders"].details == [
        "partitions is 2, the config says 3",
        "retention.ms is 604800000, the config says 1000",
    ]
    assert states[f"{prefix}control"].status == "ok"  # one partition whatever `partitions` says
    assert states[f"{prefix}preferences"].details == ["partitions is 2, the config says 3"]
    # Nothing changed: the original config still matches.
    assert set(statuses(await check_topics(created.kafka, created.topics)).values()) == {"ok"}


async def test_check_on_an_absent_prefix_creates_nothing(embedded_broker: str) -> None:
    cfg = config(embedded_broker, f"t{uuid.uuid4().hex[:12]}.")
    assert set(statuses(await check_topics(cfg.kafka, cfg.topics)).values()) == {"missing"}
    assert set(statuses(await check_topics(cfg.kafka, cfg.topics)).values()) == {"missing"}


@pytest.mark.apache_kafka
async def test_a_topic_the_broker_refuses_to_create_is_named_with_the_reason(
    apache_kafka: ApacheKafka,
) -> None:
    """Apache Kafka only: Tansu accepts any replication factor on its single broker."""
    prefix = f"t{uuid.uuid4().hex[:12]}."
    cfg = config(apache_kafka.bootstrap_servers, prefix, replication_factor=3)
    states = await create_topics(cfg.kafka, cfg.topics)
    assert set(statuses(states).values()) == {"error"}
    orders = next(state for state in states if state.spec.name == f"{prefix}orders")
    assert orders.details[0].startswith(
        f"the broker refused to create {prefix}orders: InvalidReplicationFactor"
    )


@pytest.mark.apache_kafka
async def test_a_daemon_missing_a_topic_stops_at_start_naming_it_and_the_command(
    apache_kafka: ApacheKafka, tmp_path: Path
) -> None:
    """Apache Kafka only: Tansu creates any topic a client asks about, so none is ever missing there."""
    prefix = f"t{uuid.uuid4().hex[:12]}."
    cfg = build_config(
        {
            "daemon": {"http_port": 0, "state_dir": str(tmp_path / "state")},
            "kafka": {"bootstrap_servers": apache_kafka.bootstrap_servers, "topic_prefix": prefix},
            "topics": {"partitions": 1},
            "venues": {"binance": {"symbols": ["BTC-USDT"], "ws_url": "ws://127.0.0.1:9"}},
        },
        {},
    )
    present = [f"{prefix}{name}" for name in NAMES if name not in ("orders", "results")]
    create_topics_now(apache_kafka.bootstrap_servers, present)
    with pytest.raises(TopicsMissing) as caught:
        async with asyncio.timeout(30):
            await Daemon(cfg).run(asyncio.Event())
    assert str(caught.value) == (
        f"Kafka topic(s) missing: {prefix}orders, {prefix}results (this cluster does not create topics "
        "on use); create them with `smartroute topics create --config <this config file>`"
    )


@pytest.fixture(scope="module")
def guarded_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """An Apache Kafka broker with an authorizer: everything allowed but what an ACL denies."""
    if java_binary() is None:
        unavailable("Java 17+ is not installed; apt-get install -y openjdk-17-jre-headless maven")
    authorizer = {
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "true",
    }
    with ApacheKafka(log_dir=tmp_path_factory.mktemp("guarded-kafka"), properties=authorizer) as broker:
        yield broker


def deny_creating_topics(bootstrap: str, prefix: str) -> None:
    """Deny CREATE on the cluster and on topics named `prefix`* to the (anonymous) client.

    The broker and its controller are that same anonymous principal on this plaintext
    listener: once the cluster resource has an ACL, they need an explicit ALLOW to go on.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    cluster = (ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL)
    topics = (ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED)
    acls = [
        AclBinding(*cluster, "User:ANONYMOUS", "*", AclOperation.ALL, AclPermissionType.ALLOW),
        AclBinding(*cluster, "User:ANONYMOUS", "*", AclOperation.CREATE, AclPermissionType.DENY),
        AclBinding(*topics, "User:ANONYMOUS", "*", AclOperation.CREATE, AclPermissionType.DENY),
    ]
    for future in admin.create_acls(acls, request_timeout=30).values():
        future.result(timeout=30)


async def until_refused(bootstrap: str, topic: str) -> None:
    """Wait until the broker applies the new ACLs: a validate-only creation of `topic` is refused."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(30):
            while True:
                response = await admin.create_topics([NewTopic(topic, 1, 1)], validate_only=True)
                if response.to_object()["topic_errors"][0]["error_code"] != 0:
                    return
                await asyncio.sleep(0.05)  # the authorizer learns of ACLs from the metadata log
    finally:
        await admin.close()


@pytest.mark.apache_kafka
async def test_a_broker_that_denies_creating_a_topic_gets_an_error_naming_it(
    guarded_kafka: ApacheKafka,
) -> None:
    """Apache Kafka only: Tansu has no ACLs."""
    prefix = f"denied{uuid.uuid4().hex[:8]}."
    await asyncio.to_thread(deny_creating_topics, guarded_kafka.bootstrap_servers, prefix)
    await until_refused(guarded_kafka.bootstrap_servers, f"{prefix}probe")
    cfg = config(guarded_kafka.bootstrap_servers, prefix)
    states = await create_topics(cfg.kafka, cfg.topics)
    assert [state.status for state in states] == ["error"] * len(NAMES)
    (refusal,) = states[2].details
    assert refusal.startswith(
        f"the broker refused to create {prefix}orders: TopicAuthorizationFailedError ("
    ), refusal
    assert refusal.endswith(
        f"this client's principal needs the CREATE ACL on topic {prefix}orders "
        "(or have an administrator run `smartroute topics create`)"
    ), refusal
    # A daemon may not even see these topics: it says so at start, naming them.
    with pytest.raises(TopicsMissing) as caught:
        await require_topics(cfg.kafka, [f"{prefix}orders", f"{prefix}results"])
    assert str(caught.value) == (
        f"not authorized to read the metadata of Kafka topic(s) {prefix}orders, {prefix}results: "
        "this client's principal needs the DESCRIBE ACL on them"
    )
