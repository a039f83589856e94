"""Several routers in one consumer group, one PostgreSQL ledger, killed and joining: no order twice.

Issue #16's scale-out test, as a new user would run it: `smartroute route --live` processes in one
consumer group on Apache Kafka, each with its own state_dir and HTTP port and the same
`[router] ledger_url`, trade on the fake Binance REST server. 2,000 order requests are sent while,
every few seconds, a router is killed (SIGKILL, mid-order as often as not) and a new one joins.

Before the shared ledger, the survivor of such a kill found nothing in its own ledger and sent the
same client order id again. Now a request claimed by a router that died is answered by whoever
takes over its claim once the lease expired, from the ledger and the venue, never by sending
again. So: every client order id reached the venue at most once, every request is answered, and
every answer agrees with the venue (filled ⇔ the venue filled that request's order) and with
every other answer to the same request.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import fake_binance
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from contract import assert_valid
from kafka_support import TopicReader, create_contract_topics
from venue_helpers import FAKE_CREDENTIALS

from connectors.sim import ExchangeSimulator
from daemon.apache_kafka import ApacheKafka

pytestmark = [pytest.mark.integration, pytest.mark.apache_kafka]

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 2000
QUANTITY = Decimal("0.001")
BID, ASK = "63990", "64000"
LEASE_MS = 2000
ROUTERS = 3
CHURN_S = 3.0  # a router is killed and another one joins this often while requests flow
SEED = 16
# Each order's answer comes this late (the order is placed at once): ~30 requests are mid-order at
# any moment, so every kill leaves claims whose orders the venue executed and nobody recorded.
ORDER_LATENCY_S = 0.3


@dataclass
class Desk:
    """The processes of the test: routers by name, their logs, and the ones killed."""

    tmp_path: Path
    config_text: str
    routers: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)
    started: int = 0

    async def start_router(self) -> str:
        self.started += 1
        name = f"router-{self.started}"
        home = self.tmp_path / name
        home.mkdir()
        config = home / "smartroute.toml"
        config.write_text(
            f'[daemon]\nmode = "live"\nhttp_port = 0\nstate_dir = "{home / "state"}"\n' + self.config_text
        )
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SMARTROUTE_")} | dict(
            FAKE_CREDENTIALS
        )
        with (home / "daemon.log").open("wb") as out:
            self.routers[name] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "daemon.cli", "route", "--live", "--config", str(config),
                cwd=REPO, env=environ, stdout=out, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        return name

    def kill(self, name: str) -> None:
        process = self.routers.pop(name)
        try:
            process.kill()
        except ProcessLookupError:  # it was gone before we killed it
            raise AssertionError(f"{name} exited on its own (see its log below)") from None
        self.killed.append(name)

    async def stop_all(self) -> None:
        for process in self.routers.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self.routers.values():
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()

    def events(self) -> Counter[str]:
        """Count the routers' log events by name."""
        return Counter(
            orjson.loads(line).get("event")
            for path in self.tmp_path.glob("router-*/daemon.log")
            for line in path.read_text(errors="replace").splitlines()
            if line.startswith("{")
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.parent.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.tmp_path.glob("router-*/daemon.log"))
        )


def request(n: int) -> dict[str, object]:
    return {
        "v": 1,
        "request_id": f"g-{n}",
        "user_id": "desk",
        "kind": "order",
        "symbol": "BTC-USDT",
        "side": "buy" if n % 2 == 0 else "sell",  # the position stays within a unit of flat
        "quantity": str(QUANTITY),
        "venues": ["binance"],
    }


@pytest.fixture
async def market() -> AsyncIterator[tuple[ExchangeSimulator, Any]]:
    async with (
        ExchangeSimulator(("binance",), ("BTC-USDT",), autoplay=False, seed=SEED) as sim,
        fake_binance.FakeBinance(
            orders_per_10s=1_000_000, weight_limit=100_000_000, order_latency_s=ORDER_LATENCY_S
        ) as venue,
    ):
        venue.set_book("BTCUSDT", [(BID, "100000")], [(ASK, "100000")])
        yield sim, venue


async def test_three_routers_killed_and_joining_on_one_ledger_send_no_order_twice(
    apache_kafka: ApacheKafka, postgres_url: str, tmp_path: Path, market: tuple[ExchangeSimulator, Any]
) -> None:
    sim, venue = market
    bootstrap = apache_kafka.bootstrap_servers
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(bootstrap, prefix)
    desk = Desk(
        tmp_path,
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic_prefix = "{prefix}"\n'
        f'[router]\nledger_url = "{postgres_url}"\nlease_ms = {LEASE_MS}\nsession_timeout_ms = 2000\n'
        "max_request_age_ms = 600000\n"
        "[risk]\nmax_orders_per_second = 100000\nmax_order_notional = 10000000\n"
        "[security]\nrequire_signatures = false\n"
        "[cache]\nttl_ms = 600000\nmax_quote_age_ms = 600000\n"
        f'[venues.binance]\nsymbols = ["BTC-USDT"]\nws_url = "{sim.ws_url("binance")}"\n'
        f'rest_url = "{sim.rest_url("binance")}"\ntrade_url = "{venue.rest_url}"\ntaker_fee_bps = 10\n'
        "silence_timeout_ms = 600000\n",
    )
    rng = random.Random(SEED)
    answers: dict[str, list[bytes]] = {}
    try:
        for _ in range(ROUTERS):
            await desk.start_router()
        await sim.wait_subscribed("binance", "BTC-USDT", timeout=60)
        await sim.push_quote("binance", "BTC-USDT", BID, "100", ASK, "100")
        async with TopicReader(bootstrap, f"{prefix}results") as results:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
            await producer.start()
            try:
                loop = asyncio.get_running_loop()
                next_churn = loop.time() + CHURN_S
                for n in range(REQUESTS):  # ~100 a second, with a kill and a join every CHURN_S
                    message = request(n)
                    await producer.send(
                        f"{prefix}orders", orjson.dumps(message), key=str(message["request_id"]).encode()
                    )
                    if n % 10 == 9:
                        await asyncio.sleep(0.1)
                        await sim.push_quote(
                            "binance", "BTC-USDT", BID, "100", ASK, "100"
                        )  # fresh for everyone
                    if loop.time() >= next_churn:
                        desk.kill(rng.choice(sorted(desk.routers)))
                        await desk.start_router()
                        next_churn = loop.time() + CHURN_S
                await producer.flush()
            finally:
                await producer.stop()
            async with asyncio.timeout(300):
                while len(answers) < REQUESTS:
                    for record in await results.poll(500):
                        answers.setdefault(orjson.loads(record.value)["request_id"], []).append(record.value)
                    await sim.push_quote("binance", "BTC-USDT", BID, "100", ASK, "100")
            await asyncio.sleep(2)  # a second, different answer to any request would show by now
            for record in await results.poll(500):
                answers.setdefault(orjson.loads(record.value)["request_id"], []).append(record.value)
            exited = {name: p.returncode for name, p in desk.routers.items() if p.returncode is not None}
            assert exited == {}, f"routers exited on their own: {exited}"
    finally:
        await desk.stop_all()
        print(desk.logs())  # shown by pytest when the test fails

    # No client order id reached the venue twice, and the venue saw only our requests' legs.
    sent = Counter(order.client_order_id for order in venue.orders)
    assert [coid for coid, times in sent.items() if times > 1] == []
    assert len(venue.orders) <= REQUESTS
    # Every request answered, every answer to one request the same, each valid, each agreeing with the venue.
    assert sorted(answers) == sorted(f"g-{n}" for n in range(REQUESTS))
    assert [rid for rid, copies in answers.items() if len(set(copies)) > 1] == []
    filled_at_venue = {order.client_order_id: order.executed_qty for order in venue.orders}
    statuses: Counter[str] = Counter()
    for request_id, (first, *_) in answers.items():
        result = orjson.loads(first)
        assert_valid("execution-result", result)
        statuses[result["status"]] += 1
        coids = [fill["client_order_id"] for fill in result.get("fills", []) if "client_order_id" in fill]
        filled = Decimal(result.get("filled_quantity", "0"))
        venue_filled = sum((filled_at_venue.get(coid, Decimal(0)) for coid in coids), Decimal(0))
        assert filled == venue_filled, (request_id, result)
    executed = sum(Decimal(o.executed_qty) for o in venue.orders)
    answered = sum(
        Decimal(orjson.loads(copies[0]).get("filled_quantity", "0")) for copies in answers.values()
    )
    assert executed == answered  # nothing filled at the venue that no answer reports
    assert len(desk.killed) >= 3, desk.killed
    events = desk.events()
    taken_over = events["order_taken_over"] + events["ledger_claim_taken_over"]
    assert taken_over >= 1  # some kills did leave claims open: they were taken over
    print(
        f"statuses {dict(statuses)}, orders at the venue {len(venue.orders)}, killed {desk.killed}, "
        f"taken over by the lease keeper {events['order_taken_over']}, on redelivery "
        f"{events['ledger_claim_taken_over']}, revocations {events['router_partitions_revoked']}"
    )
