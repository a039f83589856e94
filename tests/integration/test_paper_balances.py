"""Paper balances end to end through Kafka: funded orders fill and move them, unfundable ones are refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from contract import assert_valid
from kafka_support import TopicReader, create_contract_topics, daemon_toml, wait_until
from prometheus_client import REGISTRY

from connectors.sim import ExchangeSimulator
from daemon.app import Daemon
from daemon.client import send
from daemon.config import load_config

pytestmark = pytest.mark.integration

SYMBOL = "BTC-USDT"
DEPTH = "2.12345"  # the books quote sizes to 5 decimals: a sized-down quantity is rounded down onto them


@dataclass
class Running:
    daemon: Daemon
    sim: ExchangeSimulator
    results: TopicReader
    orders_topic: str


@pytest.fixture
async def running(embedded_broker: str, tmp_path: Path) -> AsyncIterator[Running]:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    async with ExchangeSimulator(("binance", "bybit"), (SYMBOL,), autoplay=False) as sim:
        config = tmp_path / "smartroute.toml"
        config.write_text(
            f"""
{daemon_toml(embedded_broker, prefix, tmp_path / "state")}
[cache]
ttl_ms = 120000
max_quote_age_ms = 60000   # scripted quotes stay usable for the whole test

[router]
session_timeout_ms = 2000

[paper.balances.binance]
USDT = "1000"
BTC = "0.01"

[paper.balances.bybit]
USDT = "1000"
BTC = "0.03"

[venues.binance]
symbols = ["{SYMBOL}"]
ws_url = "{sim.ws_url("binance")}"

[venues.bybit]
symbols = ["{SYMBOL}"]
ws_url = "{sim.ws_url("bybit")}"
"""
        )
        cfg = load_config(config, environ={})
        daemon = Daemon(cfg, roles=frozenset({"feeds", "route"}))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop), name="router-under-test")
        try:
            async with TopicReader(embedded_broker, f"{prefix}results") as results:
                assert daemon.router_service is not None
                await asyncio.wait_for(daemon.router_service.reconciled.wait(), 10)
                for venue in ("binance", "bybit"):
                    await sim.wait_subscribed(venue, SYMBOL)
                await sim.push_quote("binance", SYMBOL, "63990", DEPTH, "64000", DEPTH)
                await sim.push_quote("bybit", SYMBOL, "64200", DEPTH, "64210", DEPTH)
                await wait_until(lambda: all(daemon.cache.get(v, SYMBOL) for v in ("binance", "bybit")))
                yield Running(daemon, sim, results, cfg.topic("orders"))
        finally:
            stop.set()
            async with asyncio.timeout(15):
                await task


async def execute(running: Running, request_id: str, **fields: object) -> dict[str, object]:
    message: dict[str, object] = {"v": 1, "request_id": request_id, "user_id": "desk-1", "symbol": SYMBOL}
    message |= {"kind": "order", "max_slippage_bps": "0"} | fields
    await send(running.daemon.cfg.kafka, running.orders_topic, request_id.encode(), message)
    record = await running.results.wait_for(lambda r: r.key == request_id.encode(), timeout_s=15)
    result: dict[str, object] = orjson.loads(record.value)
    assert_valid("execution-result", result)
    return result


def balances(running: Running) -> dict[str, dict[str, str]]:
    status = running.daemon.status()["balances"]["venues"]
    return {venue: {a: h["available"] for a, h in v["assets"].items()} for venue, v in status.items()}


async def test_paper_balances_fund_orders_refuse_what_they_cannot_and_size_an_arbitrage_down(
    running: Running,
) -> None:
    # 1. Buy 0.01: binance is cheapest all-in (64000 × 1.001 = 64064); it may cost 640.64 ≤ 1000.
    #    Filled at 64000, fee 640 × 10 bps = 0.64: binance USDT 1000 − 640 − 0.64 = 359.36, BTC 0.02.
    first = await execute(running, "bal-1", side="buy", quantity="0.01")
    assert first["status"] == "filled" and [f["venue"] for f in first["fills"]] == ["binance"]  # type: ignore[attr-defined]
    assert balances(running)["binance"] == {"BTC": "0.02", "USDT": "359.36"}

    # 2. Buy 0.02: binance would need 0.02 × 64064 = 1281.28 (359.36 left), bybit 0.02 × 64210 × 1.001
    #    = 1285.4842 (1000 held): rejected, nothing sent, nothing moved.
    refused = await execute(running, "bal-2", side="buy", quantity="0.02")
    assert (refused["status"], refused["reject_code"]) == ("rejected", "insufficient_balance")
    assert "binance insufficient_balance (needs 1281.28 USDT, 359.36 available)" in str(refused["message"])
    assert "bybit insufficient_balance (needs 1285.4842 USDT, 1000 available)" in str(refused["message"])
    considered = {c["venue"]: c["excluded"] for c in refused["route"]["considered"]}  # type: ignore[index]
    assert considered == {"binance": "insufficient_balance", "bybit": "insufficient_balance"}

    # 3. Arbitrage 0.05 (buy binance, sell bybit): binance can fund 359.36 / 64064 = 0.0056093…,
    #    rounded down to the books' 0.00001 step: 0.0056; bybit holds 0.03 BTC. Sized down to 0.0056,
    #    it still pays 0.0056 × (64200 × 0.999 − 64064) = 0.0056 × 71.8 = 0.40208.
    arb = await execute(
        running, "bal-3", kind="arbitrage", quantity="0.05", buy_venue="binance", sell_venue="bybit"
    )
    assert arb["status"] == "partially_filled" and arb["filled_quantity"] == "0.0056"
    assert "sized down from 0.05 to 0.0056" in str(arb["route"]["reason"])  # type: ignore[index]
    assert {(f["venue"], f["quantity"]) for f in arb["fills"]} == {("binance", "0.0056"), ("bybit", "0.0056")}  # type: ignore[attr-defined]
    assert arb["arbitrage"]["net_cash_flow"] == "0.40208"  # type: ignore[index]

    # Buy 0.0056 @ 64000 = 358.4, fee 0.3584: binance USDT 359.36 − 358.4 − 0.3584 = 0.6016, BTC 0.0256.
    # Sell 0.0056 @ 64200 = 359.52, fee 0.35952: bybit USDT 1000 + 359.52 − 0.35952 = 1359.16048,
    # BTC 0.03 − 0.0056 = 0.0244.
    assert balances(running) == {
        "binance": {"BTC": "0.0256", "USDT": "0.6016"},
        "bybit": {"BTC": "0.0244", "USDT": "1359.16048"},
    }
    labels = {"venue": "bybit", "asset": "USDT", "state": "available"}
    assert REGISTRY.get_sample_value("smartroute_balance", labels) == pytest.approx(1359.16048)
