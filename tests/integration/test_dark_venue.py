"""A venue that goes dark mid-order never stops the daemon (#16 item 3), through Kafka, live.

`smartroute route --live` runs as a child process against two fake REST venues (Binance and
Bybit) and the exchange simulator's feeds. Binance executes the first order and then goes dark:
the order's answer is a 503 and every query of it fails for the executor's whole query window
and for the settler's first attempt, so its outcome stays unknown for a while. Before, the
error left the router and the daemon exited (and systemd restarted it into the same error).
Now the request stays in flight in the ledger and goes to the background settler (listed on
/status meanwhile); the request after it, to Bybit, is answered meanwhile; when Binance
answers again the settler settles the first request from the venue (never sending it again)
and publishes its one result. The daemon runs throughout and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import fake_binance
import fake_bybit
import orjson
import pytest
from contract import assert_valid
from kafka_support import TopicReader, create_contract_topics
from test_live_run import DESK, ENVIRON

from connectors.sim import ExchangeSimulator
from daemon.client import send
from daemon.config import Config, load_config
from router.live import SettlePolicy
from router.signatures import public_key_text

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENUES = ("binance", "bybit")
BID, ASK = "63990", "64000"
QUANTITY = "0.001"
QUERIES = len(SettlePolicy().query_delays_s) + 1  # what the executor asks before it gives up


@dataclass
class Market:
    sim: ExchangeSimulator
    fakes: dict[str, Any]


@pytest.fixture
async def market() -> AsyncIterator[Market]:
    async with AsyncExitStack() as stack:
        sim = await stack.enter_async_context(
            ExchangeSimulator(VENUES, ("BTC-USDT",), autoplay=False, seed=5)
        )
        fakes: dict[str, Any] = {
            "binance": await stack.enter_async_context(fake_binance.FakeBinance()),
            "bybit": await stack.enter_async_context(fake_bybit.FakeBybit()),
        }
        for fake in fakes.values():
            fake.set_book("BTCUSDT", [(BID, "1")], [(ASK, "1")])
        yield Market(sim, fakes)


def write_config(path: Path, bootstrap: str, prefix: str, market: Market, port: int) -> Config:
    sections = "".join(
        f'[venues.{venue}]\nsymbols = ["BTC-USDT"]\nws_url = "{market.sim.ws_url(venue)}"\n'
        + (f'rest_url = "{market.sim.rest_url(venue)}"\n' if venue == "binance" else "")
        + f'trade_url = "{market.fakes[venue].rest_url}"\ntaker_fee_bps = 10\nsilence_timeout_ms = 120000\n'
        for venue in VENUES
    )
    path.write_text(
        f'[daemon]\nmode = "live"\nhttp_port = {port}\nstate_dir = "{path.parent / "state"}"\n'
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic_prefix = "{prefix}"\n'
        "[router]\nsession_timeout_ms = 2000\nmax_request_age_ms = 120000\n"
        "[cache]\nttl_ms = 120000\nmax_quote_age_ms = 120000\n"
        f'[users.desk]\npublic_keys = ["{public_key_text(DESK.key.public_key())}"]\n' + sections
    )
    return load_config(path, environ={})


def buy(request_id: str, venue: str) -> dict[str, object]:
    return {"v": 1, "request_id": request_id, "user_id": "desk", "kind": "order", "symbol": "BTC-USDT"} | {
        "side": "buy",
        "quantity": QUANTITY,
        "venues": [venue],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def unsettled(http: aiohttp.ClientSession, port: int) -> list[dict[str, Any]]:
    """Return /status's unsettled requests (none while the daemon's HTTP is not up yet)."""
    try:
        async with http.get(f"http://127.0.0.1:{port}/status") as response:
            status = await response.json()
    except aiohttp.ClientError:
        return []
    held: list[dict[str, Any]] = status["unsettled_requests"]
    return held


async def start_daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SMARTROUTE_")} | ENVIRON
    with log.open("wb") as out:  # the JSON log on stdout, and anything on stderr
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon.cli", "route", "--live", "--config", str(config),
            cwd=REPO, env=environ, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip


async def test_a_dark_venue_holds_only_its_request_and_the_daemon_never_exits(
    tansu_broker: str, tmp_path: Path, market: Market
) -> None:
    # Tansu only: what is under test is the router's settler, not the broker (~40 s a run: the
    # executor's query window, then the settler's backoff); both brokers carry results elsewhere.
    embedded_broker = tansu_broker
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    port = free_port()
    cfg = write_config(tmp_path / "smartroute.toml", embedded_broker, prefix, market, port)
    log = tmp_path / "daemon.log"
    binance = market.fakes["binance"]
    # Binance executes the order, loses the answer, then fails every query of the executor's window.
    binance.inject("POST", "order", "accept_then_5xx")
    binance.inject("GET", "order", *(["fail_5xx"] * (2 * QUERIES)))
    daemon = await start_daemon(tmp_path / "smartroute.toml", log)
    arrivals: list[str] = []
    held: list[dict[str, Any]] = []  # what /status said of the held request, while it was held
    try:
        async with TopicReader(embedded_broker, cfg.topic("results")) as results:
            for venue in VENUES:
                await market.sim.wait_subscribed(venue, "BTC-USDT", timeout=30)
                await market.sim.push_quote(venue, "BTC-USDT", BID, "1", ASK, "1")
            await send(cfg.kafka, cfg.topic("orders"), b"dark", buy("dark", "binance"), DESK)
            await send(cfg.kafka, cfg.topic("orders"), b"lit", buy("lit", "bybit"), DESK)
            async with asyncio.timeout(90), aiohttp.ClientSession() as http:
                while {"dark", "lit"} - set(arrivals):
                    assert daemon.returncode is None, "the daemon exited"
                    held.extend(await unsettled(http, port))
                    await results.poll()
                    arrivals = [orjson.loads(r.value)["request_id"] for r in results.records]
            await asyncio.sleep(1)  # a second answer to either would arrive by now
            await results.poll()
            records = list(results.records)
        assert daemon.returncode is None, "the daemon exited"
        daemon.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await daemon.wait() == 0, log.read_text(errors="replace")[-4000:]
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        print(log.read_text(errors="replace")[-6000:])  # shown by pytest when the test fails

    answers = [orjson.loads(r.value) for r in records]
    for answer in answers:
        assert_valid("execution-result", answer)
    assert sorted(a["request_id"] for a in answers) == ["dark", "lit"]  # one answer each
    assert [r.key for r in records if orjson.loads(r.value)["request_id"] == "dark"] == [b"dark"]
    assert arrivals.index("lit") < arrivals.index("dark")  # the request after it did not wait for it
    by_id = {a["request_id"]: a for a in answers}
    for request_id, venue in (("dark", "binance"), ("lit", "bybit")):
        result = by_id[request_id]
        assert result["status"] == "filled" and Decimal(result["filled_quantity"]) == Decimal(QUANTITY)
        assert [f["venue"] for f in result["fills"]] == [venue]
    assert len(binance.orders) == 1  # settled from the venue, never sent again
    assert {h["request_id"] for h in held} == {"dark"}
    tried = [h for h in held if h["attempts"] >= 1]
    assert tried and "outcome still unknown" in tried[-1]["last_error"]  # the settler's try failed
    events = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert "order_unsettled" in {e.get("event") for e in events}
