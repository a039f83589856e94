"""Scale-out mode: `smartroute feeds` publishes quotes, a detector process turns them into opportunities."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from contract import assert_valid
from kafka_support import TopicReader, create_contract_topics, daemon_toml

from connectors.sim import ExchangeSimulator
from daemon.app import Daemon
from daemon.config import load_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


async def test_quotes_published_by_feeds_become_opportunities_in_a_detector(
    embedded_broker: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    async with ExchangeSimulator(("binance", "bybit"), ("BTC-USDT",), autoplay=False) as sim:
        config = tmp_path / "smartroute.toml"
        config.write_text(
            f"""
{daemon_toml(embedded_broker, prefix, tmp_path / "state")}[router]
session_timeout_ms = 2000
[venues.binance]
symbols = ["BTC-USDT"]
ws_url = "{sim.ws_url("binance")}"
[venues.bybit]
symbols = ["BTC-USDT"]
ws_url = "{sim.ws_url("bybit")}"
"""
        )
        feeds = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon.cli", "feeds", "--config", str(config),
            cwd=REPO,
            env={k: v for k, v in os.environ.items() if not k.startswith("SMARTROUTE_")},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        detector = Daemon(load_config(config, environ={}), roles=frozenset({"consume_quotes", "detect"}))
        assert detector.runners == {} and detector.router is None  # no exchange connection of its own
        stop = asyncio.Event()
        task = asyncio.create_task(detector.run(stop), name="detector")
        try:
            async with (
                TopicReader(embedded_broker, f"{prefix}opportunities") as opportunities,
                TopicReader(embedded_broker, f"{prefix}quotes") as quotes,
            ):
                await sim.wait_subscribed("binance", "BTC-USDT", timeout=10)
                await sim.wait_subscribed("bybit", "BTC-USDT", timeout=10)
                # The detector reads from the latest offset once its group is assigned: keep the
                # market moving until it has seen both venues.
                async with asyncio.timeout(20):
                    seq = 0
                    while not opportunities.records:
                        seq += 1
                        await sim.push_quote(
                            "binance", "BTC-USDT", "63990.00", "1.00000", f"{64000 + seq % 2}.00", "0.50000"
                        )
                        await sim.push_quote(
                            "bybit", "BTC-USDT", "64200.00", "0.30000", "64210.00", "1.00000"
                        )
                        await opportunities.poll(300)
                opened = orjson.loads(opportunities.records[0].value)
                assert_valid("opportunity", opened)
                assert (opened["event"], opened["buy_venue"], opened["sell_venue"]) == (
                    "opened",
                    "binance",
                    "bybit",
                )
                assert opened["sell_quote_age_ms"] > 0  # the hop through Kafka counts toward a quote's age
                published = await quotes.read(2, timeout_s=10)
                for record in published:
                    message = orjson.loads(record.value)
                    assert_valid("quote", message)
                    assert record.key == b"BTC-USDT" and message["venue"] in ("binance", "bybit")
        finally:
            stop.set()
            async with asyncio.timeout(15):
                await task
            feeds.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                assert await feeds.wait() == 0
