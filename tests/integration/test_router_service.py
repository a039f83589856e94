"""The router service with the real broker: requests from another Kafka client, one execution each."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Producer
from contract import assert_valid
from kafka_support import Record, TopicReader, create_contract_topics, daemon_toml, serving_router, wait_until
from prometheus_client import REGISTRY

from connectors.sim import ExchangeSimulator
from daemon import router_service
from daemon.app import Daemon
from daemon.client import control_message, send
from daemon.config import Config, load_config
from router.request_age import Enqueued
from router.signatures import Headers
from router.smart import Handled

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Env:
    cfg: Config
    config_path: Path
    bootstrap: str
    prefix: str
    results: TopicReader
    dlq: TopicReader


def write_config(path: Path, bootstrap: str, prefix: str, sim: ExchangeSimulator, state: Path) -> None:
    path.write_text(
        f"""
{daemon_toml(bootstrap, prefix, state)}
[router]
session_timeout_ms = 2000
max_batch = 20  # a SIGTERM under load finds requests still unread (the current batch always completes)

[venues.binance]
symbols = ["BTC-USDT"]
ws_url = "{sim.ws_url("binance")}"

[venues.bybit]
symbols = ["BTC-USDT"]
ws_url = "{sim.ws_url("bybit")}"
"""
    )


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    # Autoplay keeps every quote fresh, as a live market would, so paper orders can fill.
    async with ExchangeSimulator(("binance", "bybit"), ("BTC-USDT",), seed=11) as simulator:
        yield simulator


@pytest.fixture
async def env(embedded_broker: str, tmp_path: Path, sim: ExchangeSimulator) -> AsyncIterator[Env]:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    config_path = tmp_path / "smartroute.toml"
    write_config(config_path, embedded_broker, prefix, sim, tmp_path / "state")
    cfg = load_config(config_path, environ={})
    async with (
        TopicReader(embedded_broker, f"{prefix}results") as results,
        TopicReader(embedded_broker, f"{prefix}dlq") as dlq,
    ):
        yield Env(cfg, config_path, embedded_broker, prefix, results, dlq)


@pytest.fixture
async def daemon(env: Env) -> AsyncIterator[Daemon]:
    async with serving_router(env.cfg) as running:
        yield running


def order(request_id: str, **fields: object) -> dict[str, object]:
    message: dict[str, object] = {"v": 1, "request_id": request_id, "user_id": "desk-1", "kind": "order"}
    message |= {"symbol": "BTC-USDT", "side": "buy", "quantity": "0.0005"}  # the simulator never shows less
    return message | fields


def produce_with_librdkafka(
    bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]
) -> None:
    """Produce with confluent-kafka (librdkafka), a different client than the daemon's aiokafka."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False})
    for key, value in messages:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(10) == 0


def by_request(records: list[Record]) -> dict[str, list[bytes]]:
    """Group results by request_id, checking each against the published schema."""
    grouped: dict[str, list[bytes]] = defaultdict(list)
    for record in records:
        result = orjson.loads(record.value)
        assert_valid("execution-result", result)
        grouped[result["request_id"]].append(record.value)
    return grouped


async def test_requests_from_another_client_each_execute_once_and_every_delivery_gets_the_same_result(
    env: Env, daemon: Daemon
) -> None:
    valid = [f"r{i}" for i in range(5)]
    messages = [(rid.encode(), orjson.dumps(order(rid))) for rid in valid]
    messages += [(b"r0", orjson.dumps(order("r0"))), (b"r3", orjson.dumps(order("r3", quantity="9")))]
    messages += [(b"junk", b"{not json"), (b"bad", orjson.dumps(order("bad-1", quantity="-1")))]
    await asyncio.to_thread(produce_with_librdkafka, env.bootstrap, f"{env.prefix}orders", messages)

    records = await env.results.read(len(valid) + 2 + 1, timeout_s=20)
    grouped = by_request(records)
    assert set(grouped) == {*valid, "bad-1"}
    labels = {"topic": f"{env.prefix}orders", "group": "smartroute-router"}
    # Everything produced has been read: the gauge is set just after the batch's results went out.
    await wait_until(
        lambda: REGISTRY.get_sample_value("smartroute_kafka_consumer_lag_messages", labels) == 0, timeout_s=5
    )
    for request_id, answers in grouped.items():
        assert len(set(answers)) == 1, f"{request_id} was answered differently: {answers}"
    assert len(grouped["r0"]) == 2 and len(grouped["r3"]) == 2  # re-sent: the stored result again
    for request_id in valid:
        result = orjson.loads(grouped[request_id][0])
        assert result["status"] == "filled", result
        assert result["mode"] == "paper" and result["filled_quantity"] == "0.0005"
        keys = {record.key for record in records if orjson.loads(record.value)["request_id"] == request_id}
        assert keys == {request_id.encode()}
    rejected = orjson.loads(grouped["bad-1"][0])
    assert (rejected["status"], rejected["reject_code"]) == ("rejected", "invalid_request")

    dlq = await env.dlq.read(2, timeout_s=10)
    entries = {entry["key"]: entry for entry in (orjson.loads(r.value) for r in dlq)}
    for entry in entries.values():
        assert_valid("dlq-entry", entry)
    junk = entries[base64.b64encode(b"junk").decode()]
    assert base64.b64decode(junk["value_base64"]) == b"{not json"
    assert junk["source_topic"] == f"{env.prefix}orders" and isinstance(junk["offset"], int)
    assert entries[base64.b64encode(b"bad").decode()]["reject_code"] == "invalid_request"


async def test_halt_and_resume_through_the_control_topic(env: Env, daemon: Daemon) -> None:
    assert daemon.router is not None
    switch = daemon.router.kill_switch
    await send(
        env.cfg.kafka, env.cfg.topic("control"), None, control_message("halt", "venue incident", "ops")
    )
    await wait_until(lambda: switch.halted, timeout_s=2)  # the contract: within a second, plus slack for CI
    await send(env.cfg.kafka, env.cfg.topic("orders"), b"h1", order("h1"))
    halted = orjson.loads((await env.results.wait_for(lambda r: r.key == b"h1", timeout_s=15)).value)
    assert (halted["status"], halted["reject_code"]) == ("rejected", "halted")
    status = daemon.status()
    assert (status["halted"], status["halt_reason"], status["open_residuals"]) == (True, "venue incident", [])

    await send(env.cfg.kafka, env.cfg.topic("control"), None, control_message("resume", "", "ops"))
    await wait_until(lambda: not switch.halted, timeout_s=2)
    await send(env.cfg.kafka, env.cfg.topic("orders"), b"h2", order("h2"))
    resumed = orjson.loads((await env.results.wait_for(lambda r: r.key == b"h2", timeout_s=15)).value)
    assert resumed["status"] == "filled"


async def test_halt_survives_a_restart(env: Env) -> None:
    first = Daemon(env.cfg, roles=frozenset({"route"}))
    assert first.router is not None
    first.router.kill_switch.halt("maintenance", "ops")
    first.router.ledger.close()
    second = Daemon(env.cfg, roles=frozenset({"route"}))
    assert second.router is not None and second.router.kill_switch.halted
    assert second.router.kill_switch.reason == "maintenance"
    second.router.ledger.close()


async def run_child(env: Env, sent_log: Path, crash_after: str | None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("router_child.py")),
        str(env.config_path),
        str(sent_log),
        *([crash_after] if crash_after else []),
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("SMARTROUTE_")},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def test_sigkill_between_execution_and_commit_never_executes_twice(env: Env, tmp_path: Path) -> None:
    sent_log = tmp_path / "sent.log"
    child = await run_child(env, sent_log, crash_after="k2")
    try:
        await send(env.cfg.kafka, env.cfg.topic("orders"), b"k1", order("k1"))
        await env.results.wait_for(lambda r: r.key == b"k1", timeout_s=20)
        await send(env.cfg.kafka, env.cfg.topic("orders"), b"k2", order("k2"))
        async with asyncio.timeout(20):
            assert await child.wait() == -signal.SIGKILL  # killed itself right after executing k2
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert "k2 0" in sent_log.read_text()

    restarted = await run_child(env, sent_log, crash_after=None)
    try:
        settled = await env.results.wait_for(lambda r: r.key == b"k2", timeout_s=30)
        await send(env.cfg.kafka, env.cfg.topic("orders"), b"k2", order("k2"))  # a client re-sends it, too
        await env.results.read(len(env.results.records) + 1, timeout_s=15)
    finally:
        restarted.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await restarted.wait() == 0
    sends = [line.split()[0] for line in sent_log.read_text().splitlines()]
    assert sends.count("k2") == 1 and sends.count("k1") == 1  # the exchange saw each order once
    answers = {r.value for r in env.results.records if r.key == b"k2"}
    assert answers == {settled.value}  # every delivery of k2 got the same, recovered result
    result = orjson.loads(settled.value)
    assert_valid("execution-result", result)
    assert result["status"] == "failed" and "nothing was sent again" in result["message"]


async def test_smartroute_order_cli_prints_the_result(env: Env, daemon: Daemon) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.cli", "order", "--config", str(env.config_path),
        "--symbol", "BTC-USDT", "--side", "buy", "--quantity", "0.0005", "--user", "alice",
        "--request-id", "cli-1", "--timeout", "20",
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("SMARTROUTE_")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result = orjson.loads(out)
    assert (result["request_id"], result["user_id"], result["status"]) == ("cli-1", "alice", "filled")
    assert result["filled_quantity"] == "0.0005"


async def test_a_preferences_message_on_the_compacted_topic_changes_the_next_route(
    env: Env, daemon: Daemon
) -> None:
    assert daemon.router is not None
    excluded = {"v": 1, "user_id": "desk-1", "excluded_venues": ["binance"], "strategy": "best_price"}
    await send(env.cfg.kafka, env.cfg.topic("preferences"), b"desk-1", excluded)
    store = daemon.router.preferences
    await wait_until(lambda: store.get("desk-1").excluded_venues == frozenset({"binance"}), timeout_s=5)
    await send(env.cfg.kafka, env.cfg.topic("orders"), b"p1", order("p1"))
    result = orjson.loads((await env.results.wait_for(lambda r: r.key == b"p1", timeout_s=15)).value)
    assert result["status"] == "filled"
    assert {f["venue"] for f in result["fills"]} == {"bybit"}
    considered = {c["venue"]: c["excluded"] for c in result["route"]["considered"]}
    assert considered["binance"] == "excluded_by_preferences"
    # A tombstone removes the override: the user is back to the defaults.
    await asyncio.to_thread(
        produce_with_librdkafka, env.bootstrap, env.cfg.topic("preferences"), [(b"desk-1", None)]
    )
    await wait_until(lambda: store.get("desk-1").excluded_venues == frozenset(), timeout_s=5)


async def test_sigterm_under_load_loses_no_result_commits_and_exits_in_time(env: Env, tmp_path: Path) -> None:
    sent_log = tmp_path / "sent.log"
    first = await run_child(env, sent_log, crash_after=None)
    ids = [f"load-{i}" for i in range(600)]
    producing = asyncio.create_task(
        asyncio.to_thread(
            produce_with_librdkafka,
            env.bootstrap,
            f"{env.prefix}orders",
            [(rid.encode(), orjson.dumps(order(rid))) for rid in ids],
        )
    )
    try:
        await env.results.wait_for(lambda r: r.key is not None and r.key.startswith(b"load-"), timeout_s=30)
        first.send_signal(signal.SIGTERM)  # mid-stream: some requests answered, others not yet read
        async with asyncio.timeout(12):  # shutdown_timeout_ms (10 s) bounds it, well below TimeoutStopSec
            assert await first.wait() == 0
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
        await producing
    answered_before = {r.key for r in env.results.records}

    assert len(answered_before) < len(ids), "the first router finished before the signal: no load to test"
    second = await run_child(env, sent_log, crash_after=None)
    try:
        async with asyncio.timeout(60):
            while not {rid.encode() for rid in ids} <= {r.key for r in env.results.records}:
                await env.results.poll()
        # One more request, answered, proves the second router is up before it is stopped in turn.
        await send(env.cfg.kafka, env.cfg.topic("orders"), b"after", order("after"))
        await env.results.wait_for(lambda r: r.key == b"after", timeout_s=20)
    finally:
        second.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await second.wait() == 0
    sends = [line.split()[0] for line in sent_log.read_text().splitlines()]
    assert len(sends) == len(set(sends))  # no order ever sent twice
    answers = by_request(env.results.records)
    assert all(len(set(answers[rid])) == 1 for rid in ids)  # re-answers, if any, are identical
    # Sent exactly when the result shows it executed (the rest were refused, e.g. by the rate limit).
    executed = {rid for rid in ids if orjson.loads(answers[rid][0])["status"] != "rejected"}
    assert set(sends) - {"after"} == executed and executed
    # What the first process answered, it committed: the second did not answer it again.
    assert all(len(answers[rid.decode()]) == 1 for rid in answered_before if rid is not None)


@asynccontextmanager
async def running_router(env: Env, patch: Callable[[Daemon], None] | None = None) -> AsyncIterator[Daemon]:
    """Run the router role until the block ends; `patch` may wrap its parts before it starts."""
    running = Daemon(env.cfg, roles=frozenset({"feeds", "route"}))
    if patch is not None:
        patch(running)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop), name="router-under-test")
    try:
        yield running
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task


def slow_to_apply(method: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[Daemon], None]:
    """Hold each record of one followed topic until the router handled a request, or for a while.

    This stands in for a long topic or a slow broker. The hold lasts until the orders consumer
    has joined its group and then either a request was handled or `_HOLD_AFTER_JOIN_S` passed: a
    router that takes requests before it has read the topic handles one meanwhile, and the record
    applies too late for it; a router that waits for the topic applies it before its first request.
    """

    def patch(daemon: Daemon) -> None:
        assert daemon.router is not None and daemon.router_service is not None
        router, service = daemon.router.router, daemon.router_service
        joined, handled = asyncio.Event(), asyncio.Event()
        handle, apply = router.handle, getattr(service, method)
        start = router_service.start_unless_stopped

        async def start_and_tell(consumer: AIOKafkaConsumer, stop: asyncio.Event) -> bool:
            started = await start(consumer, stop)
            if service.orders_topic in consumer.subscription():
                joined.set()
            return started

        async def handle_and_tell(
            raw: bytes,
            *,
            received_ns: int | None = None,
            headers: Headers = (),
            enqueued: Enqueued | None = None,
        ) -> Handled:
            handled.set()
            return await handle(raw, received_ns=received_ns, headers=headers, enqueued=enqueued)

        async def apply_late(record: Record) -> None:
            async with asyncio.timeout(30):
                await joined.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_HOLD_AFTER_JOIN_S):
                    await handled.wait()
            await apply(record)

        monkeypatch.setattr(router_service, "start_unless_stopped", start_and_tell)
        router.handle = handle_and_tell  # type: ignore[method-assign]
        setattr(service, method, apply_late)

    return patch


async def restart_with_pending(env: Env, topic: str, key: bytes | None, message: dict[str, object]) -> None:
    """Run the router once, stop it, then write `message` to `topic` and one order while it is down."""
    async with running_router(env):
        await send(env.cfg.kafka, env.cfg.topic("orders"), b"before", order("before"))
        await env.results.wait_for(lambda r: r.key == b"before", timeout_s=20)
    await send(env.cfg.kafka, env.cfg.topic(topic), key, message)
    await send(env.cfg.kafka, env.cfg.topic("orders"), b"first", order("first"))


# Once joined, a router that does not wait fetches and handles a waiting request in milliseconds.
_HOLD_AFTER_JOIN_S = 2.0


async def test_a_halt_written_while_the_router_was_down_governs_its_first_request(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    await restart_with_pending(env, "control", None, control_message("halt", "while down", "ops"))
    async with running_router(env, slow_to_apply("_on_control", monkeypatch)):
        first = orjson.loads((await env.results.wait_for(lambda r: r.key == b"first", timeout_s=30)).value)
    assert (first["status"], first["reject_code"]) == ("rejected", "halted"), first


async def test_a_preference_written_while_the_router_was_down_governs_its_first_request(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = {"v": 1, "user_id": "desk-1", "max_order_notional": "1"}  # the order is worth ~30 USDT
    await restart_with_pending(env, "preferences", b"desk-1", tiny)
    async with running_router(env, slow_to_apply("_on_preferences", monkeypatch)):
        first = orjson.loads((await env.results.wait_for(lambda r: r.key == b"first", timeout_s=30)).value)
    assert (first["status"], first["reject_code"]) == ("rejected", "risk_limit"), first


def opportunity_event(event: str, id_: str, expires_ns: int) -> dict[str, object]:
    message: dict[str, object] = {"v": 1, "event": event, "id": id_, "symbol": "BTC-USDT"}
    message |= {"buy_venue": "binance", "sell_venue": "bybit", "quantity": "0.0005"}
    message |= {"buy_price": "64000", "sell_price": "64200", "gross_spread_bps": "31.25"}
    message |= {"net_spread_bps": "11.218", "net_profit": "0.0056", "buy_fee_bps": "10", "sell_fee_bps": "10"}
    message |= {"buy_quote_age_ms": 0.4, "sell_quote_age_ms": 2.1, "detected_ns": time.time_ns()}
    message |= {"expires_ns": expires_ns}
    assert_valid("opportunity", message)
    return message


def arbitrage(request_id: str, opportunity_id: str) -> dict[str, object]:
    message: dict[str, object] = {"v": 1, "request_id": request_id, "user_id": "desk-1", "kind": "arbitrage"}
    message |= {"symbol": "BTC-USDT", "quantity": "0.0005", "buy_venue": "binance", "sell_venue": "bybit"}
    return message | {"opportunity_id": opportunity_id}


async def result_for(env: Env, request_id: str) -> dict[str, object]:
    record = await env.results.wait_for(lambda r: r.key == request_id.encode(), timeout_s=20)
    result: dict[str, object] = orjson.loads(record.value)
    assert_valid("execution-result", result)
    return result


async def test_in_the_route_role_an_arbitrage_acts_only_on_an_opportunity_the_topic_holds_open(
    env: Env, daemon: Daemon
) -> None:
    assert daemon.detector is None  # feeds + route: the opportunities come from the topic
    await send(env.cfg.kafka, env.cfg.topic("orders"), b"serving", order("serving"))
    await result_for(env, "serving")  # the router serves, and the opportunities topic does not exist yet
    topic, later = env.cfg.topic("opportunities"), time.time_ns() + 60 * 10**9
    await send(env.cfg.kafka, topic, b"BTC-USDT", opportunity_event("opened", "kafka-opp-1", later))
    # Sent at once: the router must have read the event before judging the request.
    await send(env.cfg.kafka, env.cfg.topic("orders"), b"o1", arbitrage("o1", "kafka-opp-1"))
    judged = await result_for(env, "o1")
    assert judged["reject_code"] != "opportunity_closed", judged  # open: the books decide now

    await send(env.cfg.kafka, topic, b"BTC-USDT", opportunity_event("closed", "kafka-opp-1", later))
    await send(env.cfg.kafka, env.cfg.topic("orders"), b"o2", arbitrage("o2", "kafka-opp-1"))
    await send(env.cfg.kafka, topic, b"BTC-USDT", opportunity_event("opened", "kafka-opp-2", time.time_ns()))
    await send(env.cfg.kafka, env.cfg.topic("orders"), b"o3", arbitrage("o3", "kafka-opp-2"))
    await send(env.cfg.kafka, env.cfg.topic("orders"), b"o4", arbitrage("o4", "never-published"))
    for request_id, says in [("o2", "not open"), ("o3", "expired at"), ("o4", "not open")]:
        result = await result_for(env, request_id)
        assert (result["status"], result["reject_code"]) == ("rejected", "opportunity_closed"), result
        assert says in str(result["message"])

    await send(env.cfg.kafka, topic, b"BTC-USDT", {"v": 1, "event": "opened"})
    entry = orjson.loads((await env.dlq.wait_for(lambda r: True, timeout_s=20)).value)
    assert_valid("dlq-entry", entry)
    assert (entry["source_topic"], entry["reject_code"]) == (topic, "invalid_opportunity")
    assert "id must be a non-empty string" in entry["error"]


async def test_the_router_sends_its_results_through_the_processs_one_producer(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[AIOKafkaProducer] = []  # producers that started (a refused idempotent start is not one)
    start = AIOKafkaProducer.start

    async def counted_start(self: AIOKafkaProducer) -> None:
        await start(self)
        started.append(self)

    monkeypatch.setattr(AIOKafkaProducer, "start", counted_start)
    running = Daemon(env.cfg, roles=frozenset({"feeds", "route"}))
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop), name="router-under-test")
    try:
        assert running.router_service is not None
        await asyncio.wait_for(running.router_service.reconciled.wait(), 10)
        message = [(b"one-1", orjson.dumps(order("one-1")))]
        await asyncio.to_thread(produce_with_librdkafka, env.bootstrap, f"{env.prefix}orders", message)
        result = orjson.loads((await env.results.wait_for(lambda r: r.key == b"one-1", timeout_s=15)).value)
        assert result["status"] == "filled"
        assert len(started) == 1
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task
