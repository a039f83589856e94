"""Router scenario: order requests through the real broker to paper results.

One Tansu broker (`daemon.broker.EmbeddedBroker`), the exchange simulator
(Binance + Bybit, BTC-USDT, prices kept fresh by autoplay) and a `Daemon` with
the router role run in this process tree. A closed loop keeps `window`
requests in flight: each result read back from `smartroute.results` frees
a slot for the next request. Throughput is completed requests over the
timed span; latency is from `send()` to the result being read (both ends
of Kafka included). Warm-up requests go first and are not timed.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from connectors.sim import ExchangeSimulator
from daemon.app import Daemon
from daemon.config import Config, load_config

_SYMBOL = "BTC-USDT"
_STARTUP_TIMEOUT_S = 60.0


def router_config(path: Path, bootstrap: str, sim: ExchangeSimulator, state_dir: Path) -> Config:
    """Write and load the bench daemon's config: router role, risk rate limit out of the way."""
    path.write_text(
        f"""
[daemon]
http_port = 0
state_dir = "{state_dir}"
log_level = "warning"

[kafka]
bootstrap_servers = "{bootstrap}"
topic_prefix = "bench{uuid.uuid4().hex[:8]}."

[risk]
max_orders_per_second = 1000000

[router]
session_timeout_ms = 2000

[venues.binance]
symbols = ["{_SYMBOL}"]
ws_url = "{sim.ws_url("binance")}"

[venues.bybit]
symbols = ["{_SYMBOL}"]
ws_url = "{sim.ws_url("bybit")}"
"""
    )
    return load_config(path, environ={})


def _order(request_id: str, number: int) -> bytes:
    side = "buy" if number % 2 == 0 else "sell"  # alternate, so venue exposure stays flat
    return orjson.dumps(
        {"v": 1, "request_id": request_id, "user_id": "bench", "kind": "order", "symbol": _SYMBOL,
         "side": side, "quantity": "0.001"}
    )  # fmt: skip


class _Client:
    """Send requests and match their results, keeping at most `window` in flight."""

    def __init__(self, cfg: Config, window: int) -> None:
        servers = ",".join(cfg.kafka.bootstrap_servers)
        self.orders_topic = cfg.topic("orders")
        self.producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=0, enable_idempotence=False)
        self.consumer = AIOKafkaConsumer(
            cfg.topic("results"),
            bootstrap_servers=servers,
            group_id=None,
            auto_offset_reset="earliest",
            metadata_max_age_ms=200,
            fetch_max_wait_ms=5,
        )
        self.slots = asyncio.Semaphore(window)
        self.sent_ns: dict[str, int] = {}
        self.latencies_ns: list[int] = []
        self.statuses: Counter[str] = Counter()
        self.first_problem: str | None = None
        self.prefix = f"b{uuid.uuid4().hex[:8]}-"

    async def send(self, number: int) -> None:
        await self.slots.acquire()
        request_id = f"{self.prefix}{number}"
        self.sent_ns[request_id] = time.perf_counter_ns()
        await self.producer.send(self.orders_topic, _order(request_id, number), key=request_id.encode())

    async def receive(self, count: int) -> None:
        """Read results until `count` of ours arrived."""
        while count > 0:
            batches = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter_ns()
            for records in batches.values():
                for record in records:
                    result: dict[str, Any] = orjson.loads(record.value or b"{}")
                    sent = self.sent_ns.pop(str(result.get("request_id")), None)
                    if sent is None:
                        continue
                    self.latencies_ns.append(now - sent)
                    status = str(result.get("status"))
                    code = result.get("reject_code")
                    self.statuses[status if code is None else f"{status}:{code}"] += 1
                    if code is not None and self.first_problem is None:
                        self.first_problem = str(result.get("message"))
                    self.slots.release()
                    count -= 1

    async def run(self, first: int, count: int) -> float:
        """Send requests first..first+count-1 and wait for all their results; return the seconds it took."""
        started = time.perf_counter()
        receiving = asyncio.create_task(self.receive(count))
        for number in range(first, first + count):
            await self.send(number)
            if receiving.done():
                break
        await receiving
        return time.perf_counter() - started


async def run_router(
    workdir: Path, bootstrap: str, *, requests: int, window: int, warmup: int
) -> dict[str, Any]:
    """Start simulator and router daemon, push `requests` orders through Kafka; return rate and latency."""
    async with ExchangeSimulator(("binance", "bybit"), (_SYMBOL,), seed=11) as sim:
        cfg = router_config(workdir / "smartroute.toml", bootstrap, sim, workdir / "state")
        daemon = Daemon(cfg, roles=frozenset({"feeds", "route"}))  # `smartroute route`
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.run(stop), name="bench-router-daemon")
        client = _Client(cfg, window)
        try:
            assert daemon.router_service is not None
            async with asyncio.timeout(_STARTUP_TIMEOUT_S):
                await daemon.router_service.reconciled.wait()
                await client.producer.start()
                await client.consumer.start()
                await client.run(0, warmup)  # also waits out the group join
            client.latencies_ns.clear()
            client.statuses.clear()
            seconds = await client.run(warmup, requests)
        finally:
            await client.producer.stop()
            await client.consumer.stop()
            stop.set()
            await running
    filled = client.statuses.get("filled", 0)
    if filled < requests // 2:
        raise RuntimeError(f"most requests were not filled: {dict(client.statuses)}; {client.first_problem}")
    cuts = statistics.quantiles(client.latencies_ns, n=100, method="inclusive")
    return {
        "requests": requests,
        "window": window,
        "requests_per_s": requests / seconds,
        "p50_ms": cuts[49] / 1e6,
        "p99_ms": cuts[98] / 1e6,
        "statuses": dict(client.statuses),
    }
