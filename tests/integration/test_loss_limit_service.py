"""The daily loss limit through Kafka: a losing paper sequence halts the router; a resume lifts it."""

from __future__ import annotations

import uuid
from decimal import Decimal as D
from pathlib import Path

import orjson
import pytest
from contract import assert_valid
from kafka_support import TopicReader, create_contract_topics, daemon_toml, serving_router, wait_until

from connectors.sim import ExchangeSimulator
from daemon.app import Daemon
from daemon.client import control_message, send
from daemon.config import load_config

pytestmark = pytest.mark.integration


async def test_a_losing_sequence_through_kafka_halts_the_router_until_a_resume(
    embedded_broker: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    async with (
        ExchangeSimulator(("binance",), ("BTC-USDT",), autoplay=False, seed=5) as sim,
        TopicReader(embedded_broker, f"{prefix}results") as results,
    ):
        config = tmp_path / "smartroute.toml"
        config.write_text(
            f"""
{daemon_toml(embedded_broker, prefix, tmp_path / "state")}[cache]
max_quote_age_ms = 25000  # the simulator only sends what the test pushes; the router may start serving late
[risk]
max_daily_loss = 1
[venues.binance]
symbols = ["BTC-USDT"]
ws_url = "{sim.ws_url("binance")}"
"""
        )
        cfg = load_config(config, environ={})
        async with serving_router(cfg) as daemon:
            assert daemon.router is not None
            await sim.wait_subscribed("binance", "BTC-USDT")

            async def trade(request_id: str, side: str, bid: str, ask: str) -> dict[str, object]:
                await sim.push_quote("binance", "BTC-USDT", bid, "1", ask, "1")
                await wait_until(lambda: _ask(daemon) == D(ask), timeout_s=5)
                message = {"v": 1, "request_id": request_id, "user_id": "desk-1", "kind": "order"}
                message |= {"symbol": "BTC-USDT", "side": side, "quantity": "0.0005"}
                await send(cfg.kafka, cfg.topic("orders"), request_id.encode(), message)
                record = await results.wait_for(lambda r: r.key == request_id.encode(), timeout_s=20)
                result: dict[str, object] = orjson.loads(record.value)
                assert_valid("execution-result", result)
                return result

            assert (await trade("l1", "buy", "64000", "64010"))["status"] == "filled"
            assert not daemon.router.kill_switch.halted
            # buy 0.0005 @ 64010 (fee 10 bps: 0.032005), sell 0.0005 @ 60000 (fee 0.03):
            # 0.0005 × (60000 - 64010) - 0.032005 - 0.03 = -2.067005 < -1
            assert (await trade("l2", "sell", "60000", "60010"))["status"] == "filled"
            assert daemon.router.kill_switch.halted
            refused = await trade("l3", "buy", "60000", "60010")
            assert (refused["status"], refused["reject_code"]) == ("rejected", "halted")
            assert "realized PnL on" in str(refused["message"]) and "is -2.067005 USDT" in str(
                refused["message"]
            )
            assert daemon.status()["risk"]["realized_pnl_today"] == "-2.067005"

            await send(cfg.kafka, cfg.topic("control"), None, control_message("resume", "", "ops"))
            await wait_until(lambda: not daemon.router.kill_switch.halted, timeout_s=5)
            # The resume acknowledged the loss: the next (losing) fill does not halt again at once.
            assert (await trade("l4", "buy", "60000", "60010"))["status"] == "filled"
            assert not daemon.router.kill_switch.halted


def _ask(daemon: Daemon) -> D | None:
    entry = daemon.cache.get("binance", "BTC-USDT")
    return None if entry is None else entry.quote.ask
