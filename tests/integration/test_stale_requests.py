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

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from contract import assert_valid
from kafka_support import TopicReader, create_contract_topics
from prometheus_client import REGISTRY

from connectors.sim import ExchangeSimulator
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


async def test_requests_older_than_the_bound_when_the_router_returns_are_expired_and_none_executes(
    embedded_broker: str, tmp_path: Path, sim: ExchangeSimulator
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    cfg = config(tmp_path, embedded_broker, prefix, sim)
    orders = cfg.topic("orders")
    a_minute_ago_ms = time.time_ns() // 1_000_000 - 60_000
    async with AIOKafkaProducer(bootstrap_servers=embedded_broker, acks="all") as producer:
        for request_id in OLD:  # produced while no router runs, a minute before it comes back
            await producer.send_and_wait(
                orders, order(request_id), key=request_id.encode(), timestamp_ms=a_minute_ago_ms
            )
        before = expired_count()
        daemon = Daemon(cfg, roles=frozenset({"feeds", "route"}))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop), name="router-under-test")
        try:
            async with TopicReader(embedded_broker, cfg.topic("results")) as results:
                for request_id in OLD:
                    await results.wait_for(lambda r, rid=request_id: r.key == rid.encode(), timeout_s=20)
                await producer.send_and_wait(orders, order("fresh"), key=b"fresh")
                await results.wait_for(lambda r: r.key == b"fresh", timeout_s=20)
                answers = {r.key.decode(): orjson.loads(r.value) for r in results.records if r.key}
            assert daemon.router is not None
            legs = {rid: daemon.router.ledger.legs(rid) for rid in (*OLD, "fresh")}
        finally:
            stop.set()
            async with asyncio.timeout(15):
                await task
    for request_id in OLD:
        answer = answers[request_id]
        assert_valid("execution-result", answer)
        assert (answer["status"], answer["reject_code"]) == ("rejected", "expired"), answer
        assert "over max_request_age_ms 10000" in answer["message"]
        assert answer["fills"] == [] and legs[request_id] == []  # never sent: not even an intent
    assert answers["fresh"]["status"] == "filled", answers["fresh"]
    assert [leg.state for leg in legs["fresh"]] == ["settled"]
    assert expired_count() == before + len(OLD)
