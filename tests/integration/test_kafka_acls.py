"""smartroute on a secured Apache Kafka: TLS, SASL/SCRAM-SHA-512 and the ACLs of deploy/kafka-acls.sh.

Apache Kafka only (Tansu has neither SASL nor ACLs). Every principal logs in over SASL_SSL,
trusting the CA the test made, and holds exactly the ACLs the deploy script grants it: what
the script says is what is tested. Each test has its own topic prefix and router group, so
the ACLs one test grants never serve another.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka_support import TopicReader, wait_until
from secure_kafka import ADMIN, REPO, SecureKafka, documented_acls, make_tls

from connectors.sim import ExchangeSimulator
from daemon.app import Daemon
from daemon.client import Signer, build_order, send, send_order, signed_control_message
from daemon.config import Config, build_config
from daemon.errors import KafkaAccessDenied, KafkaUnavailable
from daemon.kafka import client_options, start_plain_producer
from daemon.kafka.topics import check_topics, create_topics
from router.signatures import public_key_text

pytestmark = [pytest.mark.integration, pytest.mark.apache_kafka]

DESK, OPS = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


@dataclass
class Deployment:
    """One test's topics and ACLs on the secured broker, and each principal's config."""

    cluster: SecureKafka
    prefix: str
    group: str
    tmp: Path

    def config_text(self, user: str, sim: ExchangeSimulator | None = None, group: str | None = None) -> str:
        """Return the config file of a process logged in as `user` (venues: `sim`'s, or none reachable)."""
        venues = "".join(
            f'[venues.{venue}]\nsymbols = ["BTC-USDT"]\n'
            f'ws_url = "{sim.ws_url(venue) if sim else "ws://127.0.0.1:9"}"\n'
            for venue in ("binance", "bybit")
        )
        return (
            f'[daemon]\nhttp_port = 0\nstate_dir = "{self.tmp / user}"\n'
            + self.cluster.kafka_toml(user, self.prefix)
            + f'[router]\nsession_timeout_ms = 2000\ngroup_id = "{group or self.group}"\n'
            + "[security]\nrequire_signatures = true\nmax_message_age_ms = 60000\n"
            + f'[users.desk-1]\npublic_keys = ["{public_key_text(DESK.public_key())}"]\n'
            + f'[operators.ops]\npublic_keys = ["{public_key_text(OPS.public_key())}"]\n'
            + venues
        )

    def config_file(self, user: str, sim: ExchangeSimulator | None = None, group: str | None = None) -> Path:
        path = self.tmp / f"{user}.toml"
        path.write_text(self.config_text(user, sim, group))
        return path

    def config(self, user: str, sim: ExchangeSimulator | None = None) -> Config:
        return build_config(tomllib.loads(self.config_text(user, sim)), self.cluster.environ(user))

    async def spawn(
        self, command: str, user: str, sim: ExchangeSimulator | None = None, **env: str
    ) -> Process:
        """Start `smartroute <command>` logged in as `user` (its password from the environment)."""
        config = self.config_file(user, sim, env.pop("group", None))
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SMARTROUTE_")}
        environ |= self.cluster.environ(user) | env
        out, err = self.tmp / f"{command}.stdout", self.tmp / f"{command}.stderr"
        with out.open("wb") as stdout, err.open("wb") as stderr:  # files: a full pipe would block it
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "daemon.cli", command, "--config", str(config),
                cwd=REPO, env=environ, stdout=stdout, stderr=stderr,
            )  # fmt: skip
        return Process(proc, out, err)


@dataclass
class Process:
    proc: asyncio.subprocess.Process
    stdout: Path
    stderr: Path

    async def outcome(self, timeout_s: float) -> tuple[int, str, str]:
        """Wait for the process to exit on its own; return its exit code, stdout and stderr."""
        async with asyncio.timeout(timeout_s):
            code = await self.proc.wait()
        return code, self.stdout.read_text(), self.stderr.read_text()

    async def stop(self) -> tuple[int, str]:
        """SIGTERM it; return its exit code and stderr."""
        if self.proc.returncode is None:
            self.proc.terminate()
        code, _, err = await self.outcome(20)
        return code, err


async def deploy(
    cluster: SecureKafka, tmp_path: Path, change: Change | None = None, **environ: str
) -> Deployment:
    """Grant deploy/kafka-acls.sh's ACLs (`environ`, then `change`) on a new prefix; create its topics."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    group = f"{prefix}router"
    acls = documented_acls(tmp_path, PREFIX=prefix, ROUTER_GROUP=group, **environ)
    await asyncio.to_thread(cluster.grant, acls if change is None else change(prefix, acls))
    deployment = Deployment(cluster, prefix, group, tmp_path)
    topics_admin = deployment.config("smartroute-admin")  # the script's topics admin, not a super user
    states = await create_topics(topics_admin.kafka, topics_admin.topics)
    assert [state.status for state in states] == ["created"] * 7, [state.line() for state in states]
    checked = await check_topics(topics_admin.kafka, topics_admin.topics)  # DescribeConfigs, too
    assert [state.status for state in checked] == ["ok"] * 7, [state.line() for state in checked]
    return deployment


Change = Callable[[str, list[AclBinding]], list[AclBinding]]


def router_may_only_describe(topic: str, documented: AclOperation) -> Change:
    """Return a change of the ACLs: the router keeps only Describe on `topic` (prefix added)."""

    def change(prefix: str, acls: list[AclBinding]) -> list[AclBinding]:
        name = f"{prefix}{topic}"
        taken = [acl for acl in acls if acl.principal == "User:smartroute-router" and acl.name == name]
        assert [acl.operation for acl in taken] == [documented]
        describe = AclBinding(
            ResourceType.TOPIC, name, ResourcePatternType.LITERAL, "User:smartroute-router", "*",
            AclOperation.DESCRIBE, AclPermissionType.ALLOW,
        )  # fmt: skip
        return [acl for acl in acls if acl not in taken] + [describe]

    return change


@pytest.fixture
async def deployment(secure_kafka: SecureKafka, tmp_path: Path) -> Deployment:
    """A fresh prefix with every ACL of deploy/kafka-acls.sh, its topics made by the topics admin."""
    return await deploy(secure_kafka, tmp_path)


async def keep_quoting(sim: ExchangeSimulator) -> None:
    """Keep Binance's ask below Bybit's bid: an opportunity the detector publishes, a price to fill at."""
    seq = 0
    while True:
        seq += 1
        await sim.push_quote("binance", "BTC-USDT", "63990.00", "1.00000", f"{64000 + seq % 2}.00", "0.50000")
        await sim.push_quote("bybit", "BTC-USDT", "64200.00", "0.30000", "64210.00", "1.00000")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[Daemon]:
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop), name="daemon-under-test")
    try:
        assert daemon.router_service is not None
        async with asyncio.timeout(20):
            await asyncio.wait({task, asyncio.ensure_future(daemon.router_service.reconciled.wait())},
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if task.done():
            await task  # it failed at start: show why
        yield daemon
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task  # a daemon that failed meanwhile says why, along with the test's own failure


async def test_each_role_runs_with_the_documented_acls_and_an_order_is_answered_over_sasl_ssl(
    deployment: Deployment,
) -> None:
    """feeds → quotes → detector → opportunities; desk → orders → router → results; an operator halts."""
    async with ExchangeSimulator(("binance", "bybit"), ("BTC-USDT",), autoplay=False) as sim:
        feeds = await deployment.spawn("feeds", "smartroute-feeds", sim)
        detector = await deployment.spawn("detect", "smartroute-detector", sim)
        router = Daemon(deployment.config("smartroute-router", sim), roles=frozenset({"feeds", "route"}))
        quoting = asyncio.create_task(keep_quoting(sim), name="quotes")
        try:
            async with running(router):
                assert router.publisher.idempotent  # Write on a topic suffices for that (Kafka ≥ 2.8)
                await desk_trades(deployment, router)
                await operator_reads_and_halts(deployment, router)
        finally:
            quoting.cancel()
            stopped = [await process.stop() for process in (feeds, detector)]
    assert [code for code, _ in stopped] == [0, 0], stopped


async def desk_trades(deployment: Deployment, router: Daemon) -> None:
    """The desk reads an opportunity, sends an order, an arbitrage on it, a forgery, its preferences."""
    desk = deployment.config("desk-1")
    signer = Signer("desk-1", DESK)
    topic = desk.topic("opportunities")
    async with TopicReader(deployment.cluster.servers, topic, client_options(desk.kafka)) as seen:
        opened = orjson.loads((await seen.wait_for(lambda r: True, timeout_s=30)).value)
    assert (opened["event"], opened["buy_venue"], opened["sell_venue"]) == ("opened", "binance", "bybit")

    order = build_order(
        symbol="BTC-USDT", quantity="0.0005", user_id="desk-1", request_id="acl-1", side="buy"
    )
    result = await send_order(desk.kafka, order, 20, signer)
    assert result is not None and result["status"] == "filled", result
    # The router follows the opportunities topic: it knows the opportunity the desk acts on.
    arbitrage = build_order(
        symbol="BTC-USDT", quantity="0.0005", user_id="desk-1", request_id="acl-2",
        buy_venue="binance", sell_venue="bybit",
    ) | {"opportunity_id": opened["id"]}  # fmt: skip
    result = await send_order(desk.kafka, arbitrage, 20, signer)
    assert result is not None and result["status"] == "filled", result
    unsigned = build_order(symbol="BTC-USDT", quantity="1", user_id="desk-1", request_id="acl-3", side="buy")
    result = await send_order(desk.kafka, unsigned, 20)
    assert result is not None and result["reject_code"] == "unauthenticated", result  # also in the DLQ

    assert router.router is not None
    store = router.router.preferences
    preferences = {"v": 1, "user_id": "desk-1", "excluded_venues": ["bybit"], "issued_ns": time.time_ns()}
    await send(desk.kafka, desk.topic("preferences"), b"desk-1", preferences, signer)
    await wait_until(lambda: store.get("desk-1").excluded_venues == {"bybit"}, timeout_s=10)


async def operator_reads_and_halts(deployment: Deployment, router: Daemon) -> None:
    """The operator reads the DLQ and the opportunities, changes a desk's preferences, halts trading."""
    ops = deployment.config("ops")
    client = client_options(ops.kafka)
    async with TopicReader(deployment.cluster.servers, ops.topic("dlq"), client) as dlq:
        entry = orjson.loads((await dlq.wait_for(lambda r: r.key == b"acl-3", timeout_s=10)).value)
    assert entry["reject_code"] == "unauthenticated"
    async with TopicReader(deployment.cluster.servers, ops.topic("opportunities"), client) as opportunities:
        await opportunities.wait_for(lambda r: True, timeout_s=10)
    operator = Signer("ops", OPS)
    assert router.router is not None
    store = router.router.preferences
    on_behalf = {"v": 1, "user_id": "desk-1", "excluded_venues": ["binance"], "issued_ns": time.time_ns()}
    await send(ops.kafka, ops.topic("preferences"), b"desk-1", on_behalf, operator)
    await wait_until(lambda: store.get("desk-1").excluded_venues == {"binance"}, timeout_s=10)
    halt = signed_control_message("halt", "acl test", None, operator)
    await send(ops.kafka, ops.topic("control"), None, halt, operator)
    assert router.router is not None
    switch = router.router.kill_switch
    await wait_until(lambda: switch.halted, timeout_s=10)


async def end_offset(cluster: SecureKafka, prefix: str, topic: str) -> int:
    """Return the end offset of `topic`'s partition 0, read by the super user."""
    admin = build_config({"kafka": cluster.kafka_table(ADMIN, prefix)}, cluster.environ(ADMIN))
    consumer = AIOKafkaConsumer(**client_options(admin.kafka))
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        ends: dict[TopicPartition, int] = await consumer.end_offsets([partition])
        return ends[partition]
    finally:
        await consumer.stop()


async def test_a_principal_without_write_on_orders_cannot_inject_an_order(deployment: Deployment) -> None:
    """Even a validly signed request (a stolen one) never reaches the topic, so nothing can execute it."""
    cluster, orders = deployment.cluster, f"{deployment.prefix}orders"
    intruder = build_config(
        {"kafka": cluster.kafka_table("intruder", deployment.prefix)}, cluster.environ("intruder")
    )
    request = build_order(
        symbol="BTC-USDT", quantity="0.0005", user_id="desk-1", request_id="in-1", side="buy"
    )
    with pytest.raises(KafkaAccessDenied) as caught:
        await send(intruder.kafka, orders, b"in-1", request, Signer("desk-1", DESK))
    assert str(caught.value) == (
        f"Kafka refused User:intruder access to topic {orders} (TopicAuthorizationFailedError): it needs "
        f"the WRITE ACL on topic {orders} (deploy/kafka-acls.sh lists each role's ACLs)"
    )
    # Allowed to see the topic, not to write it: the broker refuses the produce request itself.
    describe = AclBinding(
        ResourceType.TOPIC, orders, ResourcePatternType.LITERAL, "User:intruder", "*",
        AclOperation.DESCRIBE, AclPermissionType.ALLOW,
    )  # fmt: skip
    await asyncio.to_thread(cluster.grant, [describe])
    producer = AIOKafkaProducer(**client_options(intruder.kafka), acks="all")
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(orders, b'{"v": 1}', key=b"in-2")
    finally:
        await producer.stop()
    assert await end_offset(cluster, deployment.prefix, orders) == 0


async def test_a_wrong_sasl_password_stops_the_router_at_start_with_a_clear_error(
    deployment: Deployment,
) -> None:
    wrong = "not-the-router-password-0e7a"
    router = await deployment.spawn("route", "smartroute-router", SMARTROUTE_KAFKA__SASL_PASSWORD=wrong)
    code, out, err = await router.outcome(60)
    servers = deployment.cluster.servers
    assert code == 1, err
    assert err == (
        f"smartroute: Kafka at {servers} refused the SASL login of User:smartroute-router (SCRAM-SHA-512): "
        "SaslAuthenticationFailed: Authentication failed during authentication due to invalid credentials "
        "with SASL mechanism SCRAM-SHA-512; check kafka.sasl_username and the password "
        "(SMARTROUTE_KAFKA__SASL_PASSWORD or the credential kafka_sasl_password)\n"
    )
    assert wrong not in out + err


async def test_a_router_whose_group_has_no_read_acl_stops_at_start_naming_the_group_and_the_acl(
    deployment: Deployment,
) -> None:
    """Its config names a group the ACLs were not granted for (say, renamed without telling the admin)."""
    group = f"{deployment.prefix}renamed"
    router = await deployment.spawn("route", "smartroute-router", group=group)
    code, _, err = await router.outcome(60)
    assert (code, err.splitlines()[-1:]) == (
        1,
        [
            f"smartroute: Kafka refused User:smartroute-router access to consumer group {group} "
            f"(GroupAuthorizationFailedError): it needs the READ ACL on group {group} "
            "(deploy/kafka-acls.sh lists each role's ACLs)"
        ],
    ), err


async def test_a_router_that_may_see_but_not_read_the_control_topic_stops_instead_of_ignoring_halts(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    """Describe without Read on control: it would never see a halt, so it must not trade at all."""
    deployment = await deploy(secure_kafka, tmp_path, router_may_only_describe("control", AclOperation.READ))
    router = Daemon(deployment.config("smartroute-router"), roles=frozenset({"route"}))
    with pytest.raises(ExceptionGroup) as caught:
        async with asyncio.timeout(30):
            await router.run(asyncio.Event())
    control = f"{deployment.prefix}control"
    assert refusals(caught.value) == [
        f"Kafka refused User:smartroute-router access to topic {control} (TopicAuthorizationFailedError): "
        f"it needs the READ ACL on topic {control} (deploy/kafka-acls.sh lists each role's ACLs)"
    ]


async def test_a_router_that_may_not_write_results_stops_naming_the_topic_and_the_acl(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    """It cannot answer a request: retrying cannot help, so it stops (the request stays uncommitted)."""
    deployment = await deploy(secure_kafka, tmp_path, router_may_only_describe("results", AclOperation.WRITE))
    router = Daemon(deployment.config("smartroute-router"), roles=frozenset({"route"}))
    run = asyncio.create_task(router.run(asyncio.Event()))
    assert router.router_service is not None
    async with asyncio.timeout(20):
        await router.router_service.reconciled.wait()
    desk = deployment.config("desk-1")
    request = build_order(symbol="BTC-USDT", quantity="1", user_id="desk-1", request_id="nr-1", side="buy")
    await send(desk.kafka, desk.topic("orders"), b"nr-1", request, Signer("desk-1", DESK))
    with pytest.raises(ExceptionGroup) as caught:
        async with asyncio.timeout(30):
            await run
    results = f"{deployment.prefix}results"
    assert refusals(caught.value) == [
        f"Kafka refused User:smartroute-router access to topic {results} (TopicAuthorizationFailedError): "
        f"it needs the WRITE ACL on topic {results} (deploy/kafka-acls.sh lists each role's ACLs)"
    ]


async def test_smartroute_run_works_with_the_all_in_one_router_acls(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    """feeds, detector and router in one process, as the router's principal with ALL_IN_ONE=yes."""
    deployment = await deploy(secure_kafka, tmp_path, ALL_IN_ONE="yes")
    async with ExchangeSimulator(("binance", "bybit"), ("BTC-USDT",), autoplay=False) as sim:
        daemon = Daemon(deployment.config("smartroute-router", sim))
        assert daemon.detector is not None and daemon.router_service is not None
        quoting = asyncio.create_task(keep_quoting(sim), name="quotes")
        try:
            async with running(daemon):
                desk = deployment.config("desk-1")
                topic = desk.topic("opportunities")
                async with TopicReader(deployment.cluster.servers, topic, client_options(desk.kafka)) as seen:
                    opened = orjson.loads((await seen.wait_for(lambda r: True, timeout_s=30)).value)
                arbitrage = build_order(
                    symbol="BTC-USDT", quantity="0.0005", user_id="desk-1", request_id="aio-1",
                    buy_venue="binance", sell_venue="bybit",
                ) | {"opportunity_id": opened["id"]}  # fmt: skip
                result = await send_order(desk.kafka, arbitrage, 20, Signer("desk-1", DESK))
                assert result is not None and result["status"] == "filled", result
        finally:
            quoting.cancel()


def refusals(group: BaseExceptionGroup[BaseException]) -> list[str]:
    """Return the KafkaAccessDenied messages of a daemon's failure (its TaskGroups' exception group)."""
    denied = group.subgroup(KafkaAccessDenied)
    assert denied is not None, group
    return [str(exc) for exc in _leaves(denied)]


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    return [
        leaf
        for exc in group.exceptions
        for leaf in (_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    ]


async def test_a_broker_certificate_from_an_unknown_ca_is_refused_with_a_clear_error(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    """TLS is verified: trusting another CA, the client never sends its password to that broker."""
    other = make_tls(tmp_path / "other-ca")
    table = secure_kafka.kafka_table("desk-1", "t.") | {"ssl_cafile": str(other.ca_file)}
    cfg = build_config({"kafka": table}, secure_kafka.environ("desk-1"))
    with pytest.raises(KafkaUnavailable) as caught:
        await start_plain_producer(cfg.kafka)
    assert str(caught.value) == (
        f"no Kafka broker answered at {secure_kafka.servers}: {secure_kafka.servers}: TLS handshake failed "
        "(CERTIFICATE_VERIFY_FAILED): check kafka.ssl_cafile and ssl_check_hostname"
    )
