"""Signed orders, control and preferences through Kafka (issue #15): who may trade, halt and resume.

The daemon requires signatures; desk-1 and desk-2 are users with keys, desk-2 may only send
arbitrage requests, and ops is the operator. Every message goes through the broker with its
headers, as a desk's own producer would send it.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka_support import TopicReader, create_contract_topics, daemon_toml, serving_router, wait_until
from prometheus_client import REGISTRY

from connectors.sim import ExchangeSimulator
from daemon.app import Daemon
from daemon.config import Config, load_config
from router.signatures import public_key_text, sign

pytestmark = pytest.mark.integration

DESK_1, DESK_2, OPS = (Ed25519PrivateKey.generate() for _ in range(3))
Headers = list[tuple[str, bytes]]


@dataclass
class Env:
    cfg: Config
    bootstrap: str
    prefix: str
    results: TopicReader
    dlq: TopicReader
    producer: AIOKafkaProducer

    async def produce(self, role: str, key: bytes | None, value: bytes, headers: Headers) -> None:
        await self.producer.send_and_wait(f"{self.prefix}{role}", value, key=key, headers=headers)

    async def result(self, request_id: str) -> dict[str, object]:
        record = await self.results.wait_for(lambda r: r.key == request_id.encode(), timeout_s=15)
        decoded: dict[str, object] = orjson.loads(record.value)
        return decoded


def write_config(path: Path, bootstrap: str, prefix: str, sim: ExchangeSimulator, state: Path) -> None:
    path.write_text(
        f"""
{daemon_toml(bootstrap, prefix, state)}
[router]
session_timeout_ms = 2000

[security]
require_signatures = true
max_message_age_ms = 60000

[venues.binance]
symbols = ["BTC-USDT"]
ws_url = "{sim.ws_url("binance")}"

[venues.bybit]
symbols = ["BTC-USDT"]
ws_url = "{sim.ws_url("bybit")}"

[users.desk-1]
public_keys = ["{public_key_text(DESK_1.public_key())}"]

[users.desk-2]
public_keys = ["{public_key_text(DESK_2.public_key())}"]
kinds = ["arbitrage"]

[operators.ops]
public_keys = ["{public_key_text(OPS.public_key())}"]
"""
    )


@pytest.fixture
async def env(embedded_broker: str, tmp_path: Path) -> AsyncIterator[Env]:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    async with ExchangeSimulator(("binance", "bybit"), ("BTC-USDT",), seed=11) as sim:
        write_config(tmp_path / "smartroute.toml", embedded_broker, prefix, sim, tmp_path / "state")
        cfg = load_config(tmp_path / "smartroute.toml", environ={})
        producer = AIOKafkaProducer(bootstrap_servers=embedded_broker, acks="all")
        await producer.start()
        try:
            async with (
                TopicReader(embedded_broker, f"{prefix}results") as results,
                TopicReader(embedded_broker, f"{prefix}dlq") as dlq,
            ):
                yield Env(cfg, embedded_broker, prefix, results, dlq, producer)
        finally:
            await producer.stop()


@pytest.fixture
async def daemon(env: Env) -> AsyncIterator[Daemon]:
    async with serving_router(env.cfg) as running:
        yield running


def refused(topic: str) -> float:
    """Return how many messages of `topic` the router refused for their signature (this process)."""
    value = REGISTRY.get_sample_value("smartroute_unauthenticated_settings_total", {"topic": topic})
    return value or 0.0


def order(request_id: str, user_id: str = "desk-1") -> bytes:
    message = {"v": 1, "request_id": request_id, "user_id": user_id, "kind": "order", "symbol": "BTC-USDT"}
    return orjson.dumps(message | {"side": "buy", "quantity": "0.0005"})


def control(command: str, issued_ns: int) -> tuple[bytes, Headers]:
    message: dict[str, object] = {"v": 1, "command": command, "issued_by": "ops", "issued_ns": issued_ns}
    if command == "halt":
        message["reason"] = "venue incident"
    value = orjson.dumps(message)
    return value, sign("control", value, "ops", OPS)


async def test_only_orders_signed_by_their_user_and_within_entitlements_execute(
    env: Env, daemon: Daemon
) -> None:
    unsigned = order("u-unsigned")
    await env.produce("orders", b"u-unsigned", unsigned, [])
    forged = order("u-forged")  # desk-1's order, signed with desk-2's key
    forged_headers = sign("orders", forged, "desk-2", DESK_2)
    await env.produce("orders", b"u-forged", forged, forged_headers)
    for request_id in ("u-unsigned", "u-forged"):
        answer = await env.result(request_id)
        assert (answer["status"], answer["reject_code"]) == ("rejected", "unauthenticated"), answer

    dlq = {orjson.loads(r.value)["key"]: orjson.loads(r.value) for r in await env.dlq.read(2, timeout_s=10)}
    entry = dlq[base64.b64encode(b"u-forged").decode()]
    assert base64.b64decode(entry["value_base64"]) == forged
    assert [(h["key"], base64.b64decode(h["value_base64"])) for h in entry["headers"]] == forged_headers
    assert entry["reject_code"] == "unauthenticated" and "signed by 'desk-2'" in entry["error"]
    assert dlq[base64.b64encode(b"u-unsigned").decode()]["headers"] == []

    # The forgery claimed nothing: desk-1's own signed request with that id executes.
    await env.produce("orders", b"u-forged", forged, sign("orders", forged, "desk-1", DESK_1))
    signed = order("u-signed")
    await env.produce("orders", b"u-signed", signed, sign("orders", signed, "desk-1", DESK_1))
    assert (await env.result("u-signed"))["status"] == "filled"
    filled = [orjson.loads(r.value) for r in env.results.records if r.key == b"u-forged"]
    await wait_until(lambda: len([r for r in env.results.records if r.key == b"u-forged"]) == 2, 10)
    filled = [orjson.loads(r.value) for r in env.results.records if r.key == b"u-forged"]
    assert [f["status"] for f in filled] == ["rejected", "filled"]

    outside = order("u-outside", user_id="desk-2")
    await env.produce("orders", b"u-outside", outside, sign("orders", outside, "desk-2", DESK_2))
    answer = await env.result("u-outside")
    assert (answer["status"], answer["reject_code"]) == ("rejected", "forbidden")
    assert "desk-2 may not send order requests" in str(answer["message"])


async def test_a_halt_is_lifted_only_by_a_fresh_signed_resume_never_by_an_unsigned_or_replayed_one(
    env: Env, daemon: Daemon
) -> None:
    assert daemon.router is not None
    switch = daemon.router.kill_switch
    early_resume = control("resume", time.time_ns())
    await env.produce("control", None, *early_resume)  # applied (trading was running: nothing changes)
    await env.produce("control", None, *control("halt", time.time_ns()))
    await wait_until(lambda: switch.halted, timeout_s=5)

    unsigned_resume = orjson.dumps(
        {"v": 1, "command": "resume", "issued_by": "ops", "issued_ns": time.time_ns()}
    )
    await env.produce("control", None, unsigned_resume, [])
    await env.produce("control", None, *early_resume)  # the old signed resume, replayed byte for byte
    await wait_until(lambda: refused("control") >= 2, timeout_s=5)
    probe = order("while-halted")
    await env.produce("orders", b"while-halted", probe, sign("orders", probe, "desk-1", DESK_1))
    answer = await env.result("while-halted")
    assert (answer["status"], answer["reject_code"]) == ("rejected", "halted")
    assert switch.halted

    control_dlq = [orjson.loads(r.value) for r in await env.dlq.read(2, timeout_s=10)]
    assert {e["source_topic"] for e in control_dlq} == {f"{env.prefix}control"}
    assert any("replayed" in e["error"] for e in control_dlq)
    assert any("no smartroute-signer header" in e["error"] for e in control_dlq)

    await env.produce("control", None, *control("resume", time.time_ns()))
    await wait_until(lambda: not switch.halted, timeout_s=5)
    after = order("after-resume")
    await env.produce("orders", b"after-resume", after, sign("orders", after, "desk-1", DESK_1))
    assert (await env.result("after-resume"))["status"] == "filled"


async def test_preferences_signed_by_someone_else_never_change_a_users_routing(
    env: Env, daemon: Daemon
) -> None:
    assert daemon.router is not None
    store = daemon.router.preferences
    mine = orjson.dumps(
        {"v": 1, "user_id": "desk-1", "excluded_venues": ["bybit"], "issued_ns": time.time_ns()}
    )
    await env.produce("preferences", b"desk-1", mine, sign("preferences", mine, "desk-1", DESK_1))
    await wait_until(lambda: store.get("desk-1").excluded_venues == {"bybit"}, timeout_s=5)
    theirs = orjson.dumps(
        {"v": 1, "user_id": "desk-1", "excluded_venues": ["binance"], "issued_ns": time.time_ns()}
    )
    await env.produce("preferences", b"desk-1", theirs, sign("preferences", theirs, "desk-2", DESK_2))
    await wait_until(lambda: refused("preferences") >= 1, timeout_s=5)
    assert store.get("desk-1").excluded_venues == {"bybit"}
