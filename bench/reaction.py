"""Reaction time: an opportunity's publication → its arbitrage's orders at the venue, beside Kafka alone.

The scripted market (`bench.market`) opens an ETH-USDT dislocation every
150 ms and holds it 100 ms; `smartroute run` (its own process, paper mode)
detects it and publishes the opportunity. A client in this process reacts at
once: it reads the opportunity (a group-less consumer, `fetch_max_wait_ms`
of its own, 5 by default) and sends the arbitrage request for its quantity
(acks="all", not waiting for the acknowledgement). From the products' own
timestamps, all on the machine's wall clock:

    detected_ns   the opportunity's: when the detector built it (it is published at once)
    read_ns       this client read it from Kafka
    sent_ns       this client handed the request to its producer
    received_ns   the result's: when the router took the request (its handle() call, after the fetch)
    orders_ns     the latest `ts_ns` of the result's fills: a paper fill is stamped when the
                  executor's execute() takes the leg, i.e. when the order reaches the (paper) venue
    completed_ns  the result's: when the router finished with the request

Reaction = orders_ns - detected_ns, over arbitrages that filled on both venues;
the router's own part = orders_ns - received_ns (it includes the claim and the
leg intents written to the ledger before the orders go out).

Baseline, in the same run once the daemon stopped: the same two Kafka hops with
nothing in the middle, with the same clients' settings, at the same pace. A
`Publisher` with the daemon's `[kafka]` settings (its linger included)
publishes a message of the opportunity's size; a consumer like the client's
reads it and at once sends a message of the request's size with the client's
producer; a consumer in a group with the router's settings reads it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from bench.market import ARB_SYMBOL, LOAD_SYMBOL
from bench.processes import DaemonProcess, MarketProcess
from bench.transport import LoadClient, bench_config, create_bench_topics, percentiles_ms
from daemon.config import Config
from daemon.kafka import FETCH_MAX_WAIT_MS, Consumer, Group, Publisher, new_consumer, start_plain_producer

_PERIOD_S: Final = 0.15
_HOLD_S: Final = 0.1
_READY_TIMEOUT_S: Final = 60.0
_ANSWER_TIMEOUT_S: Final = 10.0
_STAGES: Final = (
    ("detected → read by the client", "detected_ns", "read_ns"),
    ("read → request sent", "read_ns", "sent_ns"),
    ("sent → taken by the router", "sent_ns", "received_ns"),
    ("taken → orders at the venue", "received_ns", "orders_ns"),
    ("orders at the venue → result complete", "orders_ns", "completed_ns"),
)


@dataclass
class _Reactor:
    """React to every opened opportunity with an arbitrage request; collect each one's timestamps."""

    cfg: Config
    fetch_max_wait_ms: int
    pending: dict[str, dict[str, int]] = field(default_factory=dict)
    done: list[dict[str, Any]] = field(default_factory=list)
    sizes: dict[str, list[int]] = field(default_factory=lambda: {"opportunity": [], "request": []})
    producer: Any = None

    async def run(self, seconds: float) -> None:
        consumer = new_consumer(
            self.cfg.kafka, self.cfg.topic("opportunities"), self.cfg.topic("results"),
            offsets="latest", fetch_max_wait_ms=self.fetch_max_wait_ms,
        )  # fmt: skip
        self.producer = await start_plain_producer(self.cfg.kafka)
        await consumer.start()
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await self._read(consumer, react=True)
            deadline = time.monotonic() + _ANSWER_TIMEOUT_S
            while self.pending and time.monotonic() < deadline:
                await self._read(consumer, react=False)
        finally:
            await consumer.stop()
            await self.producer.stop()

    async def _read(self, consumer: Consumer, *, react: bool) -> None:
        batches = await consumer.getmany(timeout_ms=100)
        for records in batches.values():
            for record in records:
                read_ns = time.time_ns()
                message = orjson.loads(record.value or b"{}")
                if record.topic == self.cfg.topic("results"):
                    self._answered(message)
                elif react and message.get("event") == "opened" and message.get("symbol") == ARB_SYMBOL:
                    self.sizes["opportunity"].append(len(record.value or b""))
                    await self._react(message, read_ns)

    async def _react(self, opportunity: dict[str, Any], read_ns: int) -> None:
        request_id = f"arb-{opportunity['id']}-{read_ns}"
        value = orjson.dumps(
            {"v": 1, "request_id": request_id, "user_id": "bench", "kind": "arbitrage", "symbol": ARB_SYMBOL,
             "quantity": opportunity["quantity"], "buy_venue": opportunity["buy_venue"],
             "sell_venue": opportunity["sell_venue"], "opportunity_id": opportunity["id"]}
        )  # fmt: skip
        self.sizes["request"].append(len(value))
        sent_ns = time.time_ns()
        await self.producer.send(self.cfg.topic("orders"), value, key=request_id.encode())
        self.pending[request_id] = {
            "detected_ns": int(opportunity["detected_ns"]),
            "read_ns": read_ns,
            "sent_ns": sent_ns,
        }

    def _answered(self, result: dict[str, Any]) -> None:
        times = self.pending.pop(str(result.get("request_id")), None)
        if times is None:
            return
        fills = result.get("fills") or []
        venues = {fill["venue"] for fill in fills}
        entry: dict[str, Any] = {
            **times,
            "status": result.get("status"),
            "reject_code": result.get("reject_code"),
        }
        entry |= {"received_ns": int(result["received_ns"]), "completed_ns": int(result["completed_ns"])}
        if len(venues) == 2:  # both legs reached their venue
            entry["orders_ns"] = max(int(fill["ts_ns"]) for fill in fills)
        self.done.append(entry)


def _summarize(done: list[dict[str, Any]], baseline_ns: list[int]) -> dict[str, Any]:
    both = [d for d in done if "orders_ns" in d]
    statuses: dict[str, int] = {}
    for d in done:
        key = d["status"] if d["reject_code"] is None else f"{d['status']}:{d['reject_code']}"
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "arbitrages": len(both),
        "statuses": statuses,
        "reaction": percentiles_ms([d["orders_ns"] - d["detected_ns"] for d in both]),
        "router_part": percentiles_ms([d["orders_ns"] - d["received_ns"] for d in both]),
        "kafka_round_trip": percentiles_ms(baseline_ns),
        "stages": {name: percentiles_ms([d[end] - d[start] for d in both]) for name, start, end in _STAGES},
    }


async def run_reaction(
    workdir: Path, bootstrap: str, *, duration_s: float, fetch_max_wait_ms: int
) -> dict[str, Any]:
    """React to opportunities for `duration_s`, then measure the bare two-hop round trip as many times."""
    market = MarketProcess(_PERIOD_S, _HOLD_S)
    async with market, DaemonProcess(workdir, bootstrap, market.urls) as daemon:
        warm = LoadClient(daemon.cfg, 1, LOAD_SYMBOL)
        await warm.start()
        try:
            async with asyncio.timeout(_READY_TIMEOUT_S):
                await warm.run(0, 2)  # the router serves: the daemon is up
        finally:
            await warm.stop()
        reactor = _Reactor(daemon.cfg, fetch_max_wait_ms)
        await reactor.run(duration_s)
        daemon.check_running()
    if not reactor.done:
        raise RuntimeError("no arbitrage request was answered")
    sizes = {name: int(statistics.median(values)) for name, values in reactor.sizes.items()}
    baseline = await kafka_round_trip(
        bootstrap,
        samples=len(reactor.done),
        pace_s=_PERIOD_S,
        sizes=sizes,
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    summary = _summarize(reactor.done, baseline) | {"fetch_max_wait_ms": fetch_max_wait_ms, "sizes": sizes}
    return {"summary": summary, "requests": reactor.done, "unanswered": len(reactor.pending)}


def _message(t0_ns: int, size: int) -> bytes:
    head = b'{"t0":%d,"pad":"' % t0_ns
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


async def kafka_round_trip(
    bootstrap: str, *, samples: int, pace_s: float, sizes: dict[str, int], fetch_max_wait_ms: int
) -> list[int]:
    """Return `samples` two-hop times (ns): publish → client reads, sends → router-like consumer reads."""
    cfg = bench_config(bootstrap)
    await create_bench_topics(cfg)
    hop1 = new_consumer(
        cfg.kafka, cfg.topic("opportunities"), offsets="latest", fetch_max_wait_ms=fetch_max_wait_ms
    )
    group = Group(cfg.router.group_id, cfg.router.session_timeout_ms)
    hop2 = new_consumer(cfg.kafka, cfg.topic("orders"), group=group, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    publisher, producer = Publisher(cfg.kafka), await start_plain_producer(cfg.kafka)
    await publisher.start()
    times: list[int] = []
    try:
        await hop1.start()
        await hop2.start()
        async with asyncio.TaskGroup() as tg:
            draining = tg.create_task(publisher.run())
            relay = tg.create_task(_relay(hop1, producer, cfg.topic("orders"), sizes["request"]))
            sink = tg.create_task(_sink(hop2, cfg.router.max_batch, times))
            while not times:  # warm-up: both consumers placed, the group joined
                publisher.publish(
                    cfg.topic("opportunities"), b"warm", _message(time.time_ns(), sizes["opportunity"])
                )
                await asyncio.sleep(pace_s)
            await asyncio.sleep(1.0)
            times.clear()
            for number in range(samples):
                publisher.publish(
                    cfg.topic("opportunities"), b"%d" % number, _message(time.time_ns(), sizes["opportunity"])
                )
                await asyncio.sleep(pace_s)
            async with asyncio.timeout(_ANSWER_TIMEOUT_S):
                while len(times) < samples:  # noqa: ASYNC110 - the sink moves it
                    await asyncio.sleep(0.01)
            relay.cancel()
            sink.cancel()
            await publisher.close()
            await draining
    finally:
        await hop1.stop()
        await hop2.stop()
        await producer.stop()
        await publisher.close()
    return times[:samples]


async def _relay(consumer: Consumer, producer: Any, topic: str, size: int) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=100)
        for records in batches.values():
            for record in records:
                t0 = orjson.loads(record.value or b"{}")["t0"]
                await producer.send(topic, _message(t0, size), key=record.key)


async def _sink(consumer: Consumer, max_batch: int, times: list[int]) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=100, max_records=max_batch)
        now = time.time_ns()
        times += [now - orjson.loads(r.value or b"{}")["t0"] for records in batches.values() for r in records]
