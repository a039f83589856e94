"""The daemon end to end: simulator venues → connectors → cache → detector → real Kafka broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from contract import assert_valid
from kafka_support import Record, TopicReader, create_contract_topics, daemon_toml, wait_until
from prometheus_client import REGISTRY

from connectors.sim import ExchangeSimulator
from daemon.app import Daemon
from daemon.config import load_config

pytestmark = pytest.mark.integration

SYMBOLS = ("BTC-USDT", "ETH-USDT")


@dataclass
class Running:
    daemon: Daemon
    sim: ExchangeSimulator
    reader: TopicReader
    topic: str


def reconnects(venue: str, reason: str) -> float:
    value = REGISTRY.get_sample_value("smartroute_ws_reconnects_total", {"venue": venue, "reason": reason})
    return value or 0.0


@pytest.fixture
def silence_timeout_ms() -> int:
    """Long enough that a scripted test's quiet moments never look like a dead connection."""
    return 10_000


@pytest.fixture
async def running(embedded_broker: str, tmp_path: Path, silence_timeout_ms: int) -> AsyncIterator[Running]:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    async with ExchangeSimulator(("binance", "bybit"), SYMBOLS, autoplay=False) as sim:
        config = tmp_path / "smartroute.toml"
        config.write_text(
            f"""
{daemon_toml(embedded_broker, prefix, tmp_path / "state")}
[detector]
min_net_profit_bps = 5
max_notional = 10000

[router]
session_timeout_ms = 2000

[venues.binance]
symbols = ["BTC-USDT", "ETH-USDT"]
ws_url = "{sim.ws_url("binance")}"
silence_timeout_ms = {silence_timeout_ms}

[venues.bybit]
symbols = ["BTC-USDT", "ETH-USDT"]
ws_url = "{sim.ws_url("bybit")}"
"""
        )
        daemon = Daemon(load_config(config, environ={}))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop), name="daemon-under-test")
        topic = f"{prefix}opportunities"
        try:
            async with TopicReader(embedded_broker, topic) as reader:
                for venue in ("binance", "bybit"):
                    await sim.wait_subscribed(venue, "BTC-USDT")
                yield Running(daemon, sim, reader, topic)
        finally:
            stop.set()
            async with asyncio.timeout(10):
                await task  # a clean, bounded shutdown is part of what is tested


def event(record: Record) -> dict[str, object]:
    """Decode an opportunity read back from Kafka, checking it against the published schema."""
    value: dict[str, object] = orjson.loads(record.value)
    assert_valid("opportunity", value)
    return value


async def open_btc_opportunity(sim: ExchangeSimulator) -> None:
    await sim.push_quote("binance", "BTC-USDT", "63990.00", "1.00000", "64000.00", "0.50000")
    await sim.push_quote("bybit", "BTC-USDT", "64200.00", "0.30000", "64210.00", "1.00000")


async def test_quotes_from_both_protocols_become_an_exact_opportunity_on_kafka(running: Running) -> None:
    await open_btc_opportunity(running.sim)
    record = await running.reader.wait_for(lambda r: event(r)["event"] == "opened")
    # Buy binance @ 64000, sell bybit @ 64200, 10 bps taker each: per unit 64135.8 − 64064 = 71.8;
    # size min(0.5, 0.3) capped by 10000 / 64000 = 0.15625 → net 11.21875 USDT.
    assert record.key == b"BTC-USDT"
    message = event(record)
    assert {k: message[k] for k in ("v", "symbol", "buy_venue", "sell_venue")} == {
        "v": 1,
        "symbol": "BTC-USDT",
        "buy_venue": "binance",
        "sell_venue": "bybit",
    }
    assert (message["quantity"], message["buy_price"], message["sell_price"]) == ("0.15625", "64000", "64200")
    assert (message["net_profit"], message["gross_spread_bps"]) == ("11.21875", "31.25")
    assert message["buy_fee_bps"] == "10" and message["sell_fee_bps"] == "10"
    assert isinstance(message["expires_ns"], int) and isinstance(message["detected_ns"], int)
    assert message["expires_ns"] > message["detected_ns"]


async def test_dropped_connection_reconnects_resubscribes_and_carries_on(running: Running) -> None:
    await open_btc_opportunity(running.sim)
    opened = event(await running.reader.wait_for(lambda r: event(r)["event"] == "opened"))
    accepted = running.sim.connections_accepted("bybit")
    await running.sim.drop_connections("bybit")
    await running.sim.wait_subscribed("bybit", "BTC-USDT", count=2)
    assert running.sim.connections_accepted("bybit") == accepted + 1
    # The spread goes away on the new connection: the same opportunity closes.
    await running.sim.push_quote("bybit", "BTC-USDT", "63995.00", "1.00000", "64005.00", "1.00000")
    closed = event(await running.reader.wait_for(lambda r: event(r)["event"] == "closed"))
    assert closed["id"] == opened["id"]


async def test_a_dropped_connection_withdraws_its_books_and_closes_what_was_built_on_them(
    running: Running,
) -> None:
    await open_btc_opportunity(running.sim)
    opened = event(await running.reader.wait_for(lambda r: event(r)["event"] == "opened"))
    assert running.daemon.cache.get("bybit", "BTC-USDT") is not None
    running.sim.set_silent("bybit", True)  # the next connection opens but delivers nothing
    await running.sim.drop_connections("bybit")
    closed = event(await running.reader.wait_for(lambda r: event(r)["event"] == "closed"))
    assert closed["id"] == opened["id"]
    # Withdrawn, not merely stale: a stale quote would still be cached (its TTL is 30 s).
    assert running.daemon.cache.get("bybit", "BTC-USDT") is None
    assert running.daemon.cache.get("bybit", "ETH-USDT") is None
    assert running.daemon.cache.get("binance", "BTC-USDT") is not None


@pytest.mark.parametrize("silence_timeout_ms", [600])
async def test_a_silent_connection_is_detected_and_reopened(running: Running) -> None:
    before = reconnects("binance", "silence")
    accepted = running.sim.connections_accepted("binance")
    running.sim.set_silent("binance", True)  # the socket stays open, nothing arrives
    await wait_until(lambda: reconnects("binance", "silence") > before, timeout_s=5)
    running.sim.set_silent("binance", False)
    await wait_until(lambda: running.sim.connections_accepted("binance") > accepted, timeout_s=5)
    await running.sim.wait_subscribed("binance", "BTC-USDT", count=2, timeout=5)
    # Quotes flow again through the new connection into the detector.
    await open_btc_opportunity(running.sim)
    await running.reader.wait_for(lambda r: event(r)["event"] == "opened")


async def test_a_stale_quote_closes_the_opportunity_without_new_data(running: Running) -> None:
    await open_btc_opportunity(running.sim)
    await running.reader.wait_for(lambda r: event(r)["event"] == "opened")
    # No more quotes: after max_quote_age_ms (1500 ms by default) the sweep closes it.
    closed = await running.reader.wait_for(lambda r: event(r)["event"] == "closed", timeout_s=5)
    assert event(closed)["symbol"] == "BTC-USDT"
    assert running.daemon.status()["open_opportunities"] == 0
