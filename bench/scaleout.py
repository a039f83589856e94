"""Scale-out: 1 vs 2 `smartroute route` processes in one consumer group, on Apache Kafka.

The scripted market (`bench.market`, its own process) keeps BTC-USDT quoted on
Binance and Bybit; `routers` processes run `python -m daemon.cli route` (feeds
+ router, paper), each with its own state_dir and all with one PostgreSQL
ledger (`[router] ledger_url`, a fresh database per run on the harness's local
server): the deployment README "Running several routers" describes. They share
topics (six partitions) and consumer group. The closed-loop client of the router scenario
(`bench.transport.LoadClient`, this process) keeps `window` paper market
orders in flight. After the warm-up it waits for the group to settle (every
router joined), then times `requests` requests: rate, p50, p99 as in the
router scenario, and the CPU seconds each router process used meanwhile
(from /proc), so that "2 routers on 2 shared cores" is read with the cores
it actually got.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Final

from bench.market import LOAD_SYMBOL
from bench.processes import DaemonProcess, MarketProcess
from bench.transport import LoadClient
from router.ledger.postgres import redact_url

_READY_TIMEOUT_S: Final = 60.0
_SETTLE_S: Final = 3.0  # two session timeouts' halves: a rebalance after the second router joined is over
_TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds process `pid` used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime, stime: fields 14 and 15 of the line


async def run_scaleout(
    workdir: Path, bootstrap: str, *, routers: int, requests: int, window: int, warmup: int, ledger_url: str
) -> dict[str, Any]:
    """Time `requests` orders through `routers` route processes in one group; return rate, latency, CPU."""
    market = MarketProcess(period_s=1.0, hold_s=0.1)
    async with (
        market,
        DaemonProcess(
            workdir, bootstrap, market.urls, command="route", copies=routers, ledger_url=ledger_url
        ) as daemons,
    ):
        client = LoadClient(daemons.cfg, window, LOAD_SYMBOL)
        await client.start()
        try:
            async with asyncio.timeout(_READY_TIMEOUT_S):
                await client.run(0, warmup)
            await asyncio.sleep(_SETTLE_S)
            await client.run(warmup, warmup)
            daemons.check_running()
            client.reset()
            before = [cpu_seconds(proc.pid) for proc in daemons.procs]
            seconds = await client.run(2 * warmup, requests)
            used = [cpu_seconds(proc.pid) - start for proc, start in zip(daemons.procs, before, strict=True)]
            daemons.check_running()
        finally:
            await client.stop()
    return {
        "routers": routers,
        "ledger": redact_url(ledger_url),
        "window": window,
        **client.summary(requests, seconds),
        "seconds": seconds,
        "router_cpu_s": used,
        "router_cores": sum(used) / seconds,
    }
