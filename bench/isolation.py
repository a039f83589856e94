"""Feed isolation: does order flow delay the price feed and the detector in one `smartroute run`?

The scripted market (`bench.market`, its own process) opens an ETH-USDT
dislocation every 40 ms (held 20 ms); the daemon (`smartroute run`: feeds,
detector, router in one process, paper, its own process) detects each and
publishes an opportunity. Latency of one dislocation: from the market's
`sent_ns` (just before the quote frame is handed to its WebSocket server) to
the opportunity's `detected_ns` (the daemon's wall clock when the detector
built the event), read back from the opportunities topic after the run: the
frame's trip over loopback, its wait to be read by a busy event loop, parsing,
cache and detector. Only `opened` events count.

Phases alternate, `rounds` times: idle (no order request), then loaded (this
process keeps `window` paper market orders on BTC-USDT in flight through Kafka,
`bench.transport.LoadClient`; the phase ends when the last one is answered).
A dislocation belongs to the phase its `sent_ns` falls in. Reported: p50/p99
per phase and loaded/idle p99; also the market's own write time
(`written_ns - sent_ns`), which shows a machine too busy to send on time.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Final

import orjson

from bench.market import ARB_SYMBOL, LOAD_SYMBOL, dislocation_number
from bench.processes import DaemonProcess, MarketProcess, read_topic
from bench.transport import LoadClient, percentiles_ms

_PERIOD_S: Final = 0.04
_HOLD_S: Final = 0.02
_WARMUP_REQUESTS: Final = 20
_READY_TIMEOUT_S: Final = 60.0


def opened_at(values: list[bytes]) -> dict[int, int]:
    """Return each dislocation's first `opened` event's detected_ns, by dislocation number."""
    detected: dict[int, int] = {}
    for value in values:
        event = orjson.loads(value)
        if event.get("event") == "opened" and event.get("symbol") == ARB_SYMBOL:
            detected.setdefault(dislocation_number(event["sell_price"]), int(event["detected_ns"]))
    return detected


def phase_figures(
    records: list[dict[str, Any]], detected: dict[int, int], start_ns: int, end_ns: int
) -> dict[str, Any]:
    """Return the latency figures of the dislocations sent within [start_ns, end_ns)."""
    inside = [r for r in records if start_ns <= r["sent_ns"] < end_ns]
    latencies = [detected[r["n"]] - r["sent_ns"] for r in inside if r["n"] in detected]
    writes = [r["written_ns"] - r["sent_ns"] for r in inside]
    return {
        "dislocations": len(inside),
        "events": len(latencies),
        **percentiles_ms(latencies),
        "write_p99_ms": percentiles_ms(writes)["p99_ms"],
    }


async def _phases(client: LoadClient, daemon: DaemonProcess, phase_s: float, rounds: int) -> dict[str, Any]:
    windows: dict[str, list[tuple[int, int]]] = {"idle": [], "loaded": []}
    answered, loaded_s, number = 0, 0.0, _WARMUP_REQUESTS
    for _ in range(rounds):
        start = time.time_ns()
        await asyncio.sleep(phase_s)
        windows["idle"].append((start, time.time_ns()))
        daemon.check_running()
        client.reset()
        start, began = time.time_ns(), time.perf_counter()
        number += await client.run_for(number, phase_s)
        loaded_s += time.perf_counter() - began
        answered += len(client.latencies_ns)
        windows["loaded"].append((start, time.time_ns()))
        daemon.check_running()
    return {
        "windows": windows,
        "loaded_requests_per_s": answered / loaded_s,
        "statuses": dict(client.statuses),
    }


async def run_isolation(
    workdir: Path, bootstrap: str, *, phase_s: float, rounds: int, window: int
) -> dict[str, Any]:
    """Run idle and loaded phases against one daemon; return per-phase latency figures and the ratio."""
    async with MarketProcess(_PERIOD_S, _HOLD_S) as market:
        async with DaemonProcess(workdir, bootstrap, market.urls) as daemon:
            client = LoadClient(daemon.cfg, window, LOAD_SYMBOL)
            await client.start()
            try:
                async with asyncio.timeout(_READY_TIMEOUT_S):
                    await client.run(0, _WARMUP_REQUESTS)  # the router serves: the daemon is up
                run = await _phases(client, daemon, phase_s, rounds)
            finally:
                await client.stop()
        values = await read_topic(daemon.cfg, daemon.cfg.topic("opportunities"))  # once it stopped
    detected = opened_at(values)
    summary: dict[str, Any] = {"window": window, "loaded_requests_per_s": run["loaded_requests_per_s"]}
    for phase, spans in run["windows"].items():
        records = [r for start, end in spans for r in market.records if start <= r["sent_ns"] < end]
        summary[phase] = phase_figures(records, detected, 0, 2**63)
    summary["ratio"] = summary["loaded"]["p99_ms"] / summary["idle"]["p99_ms"]
    return {"summary": summary, "statuses": run["statuses"], "phase_s": phase_s, "rounds": rounds}
