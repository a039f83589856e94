"""Memory scenario: RSS and asyncio task count of a running daemon, at start and after a steady soak.

The exchange simulator runs in a child process (so its memory is not
counted), serving Binance and Bybit with autoplay at a steady tick; a Tansu
broker takes the opportunities. The daemon (feeds, detector, router, publisher:
`smartroute run`) runs in this process. After a warm-up, RSS and the task
count are taken (after a full garbage collection, so that garbage not yet
collected does not pass for growth), then again every tenth of the soak and
at its end.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import REGISTRY

from daemon.app import Daemon
from daemon.config import Config, load_config

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_STARTUP_TIMEOUT_S = 60.0
SOAK_VENUES = ("binance", "bybit")


def rss_bytes() -> int:
    """Return this process's resident set size (Linux /proc; psutil is not needed for it)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


def _snapshot(started: float) -> dict[str, float]:
    gc.collect()
    quotes = sum(
        REGISTRY.get_sample_value("smartroute_quotes_total", {"venue": venue}) or 0.0 for venue in SOAK_VENUES
    )
    return {
        "t_s": round(time.monotonic() - started, 1),
        "rss_mib": rss_bytes() / 2**20,
        "tasks": len(asyncio.all_tasks()),
        "quotes": quotes,
    }


def soak_config(path: Path, bootstrap: str, urls: dict[str, str], symbols: list[str], state: Path) -> Config:
    """Write and load the soak daemon's config: every role, HTTP off, the simulator's venues."""
    venues = "".join(
        f'\n[venues.{venue}]\nsymbols = {orjson.dumps(symbols).decode()}\nws_url = "{urls[venue]}"\n'
        for venue in SOAK_VENUES
    )
    path.write_text(
        f"""
[daemon]
http_port = 0
state_dir = "{state}"
log_level = "warning"

[kafka]
bootstrap_servers = "{bootstrap}"
topic_prefix = "soak."

[router]
session_timeout_ms = 2000
{venues}"""
    )
    return load_config(path, environ={})


async def _start_simulator(
    symbols: list[str], tick_s: float
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.worker", "sim", "--symbols", ",".join(symbols), "--tick-s", str(tick_s),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert sim.stdout is not None
    async with asyncio.timeout(_STARTUP_TIMEOUT_S):
        line = await sim.stdout.readline()
    if not line:
        raise RuntimeError(f"the simulator process exited ({await sim.wait()}) before listening")
    urls: dict[str, str] = orjson.loads(line)
    return sim, urls


async def run_soak(
    workdir: Path, bootstrap: str, *, symbols: list[str], tick_s: float, warmup_s: float, duration_s: float
) -> dict[str, Any]:
    """Run the daemon against the simulator for `duration_s` after `warmup_s`; return memory and tasks."""
    sim, urls = await _start_simulator(symbols, tick_s)
    try:
        cfg = soak_config(workdir / "smartroute.toml", bootstrap, urls, symbols, workdir / "state")
        daemon = Daemon(cfg)
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.run(stop), name="bench-soak-daemon")
        try:
            async with asyncio.timeout(_STARTUP_TIMEOUT_S):
                await daemon.started.wait()
            await asyncio.sleep(warmup_s)
            started = time.monotonic()
            samples = [_snapshot(started)]
            for _ in range(10):
                await asyncio.sleep(duration_s / 10)
                samples.append(_snapshot(started))
        finally:
            stop.set()
            await running
    finally:
        assert sim.stdin is not None
        sim.stdin.close()
        await sim.wait()
    first, last = samples[0], samples[-1]
    return {
        "duration_s": last["t_s"],
        "quotes_per_s": (last["quotes"] - first["quotes"]) / last["t_s"],
        "rss_start_mib": first["rss_mib"],
        "rss_end_mib": last["rss_mib"],
        "rss_growth_mib": last["rss_mib"] - first["rss_mib"],
        "rss_max_mib": max(s["rss_mib"] for s in samples),
        "tasks_start": first["tasks"],
        "tasks_end": last["tasks"],
        "samples": samples,
    }
