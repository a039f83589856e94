"""What every Kafka scenario shares: the bench's topics, the closed-loop client, the bare loop.

`LoadClient` keeps `window` order requests in flight (each result read back
frees a slot) and times each request from `send()` to its result being read.
`serve_bare` is the transport's limit the router is measured against: the
router service's Kafka loop with nothing in the middle. It reads the orders
topic in the router's consumer group with the router's settings
(`daemon.kafka.new_consumer`, `FETCH_MAX_WAIT_MS`, `getmany(max_records=[router]
max_batch)`), answers every request with a result of the same size as a
router's paper result (the request id from the record's key, no parsing),
sends each partition's answers through the process's `Publisher`
(`send_and_wait`: acks="all", as the router does) and commits the partition's
offset once they are acknowledged. No ledger, no pricing, no execution.
With `per_partition=False` it sends a whole fetch's answers at once and
commits all its partitions in one request: the same work in fewer round trips.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from typing import Any, Final

import orjson

from daemon.config import Config, build_config
from daemon.kafka import FETCH_MAX_WAIT_MS, Group, Publisher, new_consumer, start_plain_producer
from daemon.kafka.topics import create_topics

_POLL_MS: Final = 100  # the router service's getmany timeout
# A paper market order's result from the router scenario is ~1.1 kB: the bare loop's answers are as long.
BARE_RESULT_BYTES: Final = 1100
_DRAIN_TIMEOUT_S: Final = 30.0


def bench_config(bootstrap: str, **sections: dict[str, Any]) -> Config:
    """Return a config on `bootstrap` with fresh topic prefix and router group, plus `sections`."""
    tag = uuid.uuid4().hex[:8]
    raw: dict[str, Any] = {
        "daemon": {"http_port": 0, "log_level": "warning"},
        "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": f"bench{tag}."},
        "router": {"session_timeout_ms": 2000, "group_id": f"bench-router-{tag}"},
    }
    for name, values in sections.items():
        raw[name] = raw.get(name, {}) | values
    return build_config(raw, {})


async def create_bench_topics(cfg: Config) -> None:
    """Create the contract's topics under the config's prefix (Apache Kafka creates none by itself)."""
    states = await create_topics(cfg.kafka, cfg.topics)
    refused = [state.line() for state in states if state.status not in ("created", "ok")]
    if refused:
        raise RuntimeError(f"cannot create the bench topics: {refused}")


def order_request(request_id: str, number: int, symbol: str) -> bytes:
    """Return a paper market order request; sides alternate so that venue exposure stays flat."""
    side = "buy" if number % 2 == 0 else "sell"
    return orjson.dumps(
        {"v": 1, "request_id": request_id, "user_id": "bench", "kind": "order", "symbol": symbol,
         "side": side, "quantity": "0.001"}
    )  # fmt: skip


def percentiles_ms(samples_ns: list[int]) -> dict[str, float]:
    """Return p50 and p99 of nanosecond samples in milliseconds (at least 2 samples)."""
    if len(samples_ns) < 2:
        raise RuntimeError(f"only {len(samples_ns)} samples: nothing to summarize")
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return {"p50_ms": cuts[49] / 1e6, "p99_ms": cuts[98] / 1e6}


class LoadClient:
    """Send order requests and match their results, keeping at most `window` in flight."""

    def __init__(self, cfg: Config, window: int, symbol: str = "BTC-USDT") -> None:
        self.cfg = cfg
        self.symbol = symbol
        self.orders_topic = cfg.topic("orders")
        self.consumer = new_consumer(cfg.kafka, cfg.topic("results"), fetch_max_wait_ms=5)
        self.producer: Any = None
        self.slots = asyncio.Semaphore(window)
        self.sent_ns: dict[str, int] = {}
        self.latencies_ns: list[int] = []
        self.result_bytes: list[int] = []
        self.statuses: Counter[str] = Counter()
        self.first_problem: str | None = None
        self.prefix = f"b{uuid.uuid4().hex[:8]}-"

    async def start(self) -> None:
        """Connect the producer (linger 0, acks=all) and the results consumer (no group, from the start)."""
        self.producer = await start_plain_producer(self.cfg.kafka)
        await self.consumer.start()

    async def stop(self) -> None:
        """Close both clients."""
        if self.producer is not None:
            await self.producer.stop()
        await self.consumer.stop()

    def reset(self) -> None:
        """Forget what was measured so far (after the warm-up)."""
        self.latencies_ns.clear()
        self.result_bytes.clear()
        self.statuses.clear()

    async def _send(self, number: int) -> None:
        await self.slots.acquire()
        await self._send_in_slot(number)

    async def _send_in_slot(self, number: int) -> None:
        request_id = f"{self.prefix}{number}"
        self.sent_ns[request_id] = time.perf_counter_ns()
        value = order_request(request_id, number, self.symbol)
        await self.producer.send(self.orders_topic, value, key=request_id.encode())

    async def _receive(self, count: int | None) -> None:
        """Read results until `count` of ours arrived (None: until cancelled)."""
        while count is None or count > 0:
            batches = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter_ns()
            for records in batches.values():
                for record in records:
                    if self._match(record.value or b"{}", now) and count is not None:
                        count -= 1

    def _match(self, value: bytes, now: int) -> bool:
        result: dict[str, Any] = orjson.loads(value)
        sent = self.sent_ns.pop(str(result.get("request_id")), None)
        if sent is None:
            return False
        self.latencies_ns.append(now - sent)
        self.result_bytes.append(len(value))
        status, code = str(result.get("status")), result.get("reject_code")
        self.statuses[status if code is None else f"{status}:{code}"] += 1
        if code is not None and self.first_problem is None:
            self.first_problem = str(result.get("message"))
        self.slots.release()
        return True

    async def run(self, first: int, count: int) -> float:
        """Send requests first..first+count-1 and wait for all their results; return the seconds it took."""
        started = time.perf_counter()
        receiving = asyncio.create_task(self._receive(count))
        for number in range(first, first + count):
            await self._send(number)
            if receiving.done():
                break
        await receiving
        return time.perf_counter() - started

    async def run_for(self, first: int, seconds: float) -> int:
        """Keep the window full for `seconds`, then wait until all are answered; return how many were sent."""
        receiving = asyncio.create_task(self._receive(None))
        deadline = time.perf_counter() + seconds
        number = first
        try:
            while (left := deadline - time.perf_counter()) > 0 and not receiving.done():
                try:
                    async with asyncio.timeout(left):
                        await self.slots.acquire()
                except TimeoutError:
                    break
                await self._send_in_slot(number)  # never cut short: every request sent is answered
                number += 1
            async with asyncio.timeout(_DRAIN_TIMEOUT_S):
                while self.sent_ns and not receiving.done():  # noqa: ASYNC110 - results move it
                    await asyncio.sleep(0.005)
        finally:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
        return number - first

    def summary(self, requests: int, seconds: float) -> dict[str, Any]:
        """Return rate, latency percentiles, statuses and result size of the timed requests."""
        return {
            "requests": requests,
            "requests_per_s": requests / seconds,
            **percentiles_ms(self.latencies_ns),
            "statuses": dict(self.statuses),
            "result_bytes": statistics.median(self.result_bytes),
        }


def _bare_result(key: bytes | None, size: int) -> bytes:
    head = b'{"v":1,"request_id":"' + (key or b"") + b'","status":"filled","reject_code":null,"pad":"'
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


async def serve_bare(
    cfg: Config, stop: asyncio.Event, ready: asyncio.Event, result_bytes: int, *, per_partition: bool = True
) -> None:
    """Answer every order request with a fixed result until `stop`, as the router service's loop does.

    `per_partition` (the router's way): each partition's answers are sent and acknowledged, then its
    offset committed, one partition after another. Otherwise every answer of one fetch is sent at
    once and one commit covers all its partitions: the fewest round trips this design allows.
    """
    publisher = Publisher(cfg.kafka)
    await publisher.start()
    group = Group(cfg.router.group_id, cfg.router.session_timeout_ms)
    consumer = new_consumer(cfg.kafka, cfg.topic("orders"), group=group, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    results_topic = cfg.topic("results")
    try:
        await consumer.start()
        ready.set()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=_POLL_MS, max_records=cfg.router.max_batch)
            if not per_partition and batches:
                answers = [
                    (results_topic, r.key, _bare_result(r.key, result_bytes))
                    for rs in batches.values()
                    for r in rs
                ]
                await publisher.send_and_wait(answers)
                await consumer.commit(
                    {partition: records[-1].offset + 1 for partition, records in batches.items()}
                )
                continue
            for partition, records in batches.items():
                answers = [(results_topic, r.key, _bare_result(r.key, result_bytes)) for r in records]
                await publisher.send_and_wait(answers)
                await consumer.commit({partition: records[-1].offset + 1})
    finally:
        await consumer.stop()
        await publisher.close()
