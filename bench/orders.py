"""Router scenario: order requests through a real broker to paper results, beside the bare loop.

The exchange simulator (Binance + Bybit, BTC-USDT, prices kept fresh by
autoplay) and a `Daemon` with the router role (`smartroute route`: feeds +
route, paper mode, its SQLite ledger in a temporary state_dir) run in this
process, on a broker the harness started (Tansu or Apache Kafka); the bench
creates the contract's topics first (six partitions each, the default). A
closed loop (`bench.transport.LoadClient`) keeps `window` requests in flight:
each result read back from `smartroute.results` frees a slot for the next
request. Throughput is completed requests over the timed span; latency is from
`send()` to the result being read (both ends of Kafka included). Warm-up
requests go first and are not timed (they also wait out the group join).

`run_bare` runs the same client against `bench.transport.serve_bare`
instead of the router: the transport's limit, same topics and settings.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench.transport import LoadClient, bench_config, create_bench_topics, serve_bare
from connectors.sim import ExchangeSimulator
from daemon.app import Daemon
from daemon.config import Config

_SYMBOL = "BTC-USDT"
_STARTUP_TIMEOUT_S = 60.0


def router_config(bootstrap: str, sim: ExchangeSimulator, state_dir: Path) -> Config:
    """Return the router daemon's config: paper, Binance and Bybit from `sim`, no risk rate limit."""
    return bench_config(
        bootstrap,
        daemon={"state_dir": str(state_dir)},
        risk={"max_orders_per_second": 1_000_000},
        venues={venue: {"symbols": [_SYMBOL], "ws_url": sim.ws_url(venue)} for venue in ("binance", "bybit")},
    )


async def _measure(client: LoadClient, *, requests: int, warmup: int) -> dict[str, Any]:
    await client.start()
    await client.run(0, warmup)  # also waits out the group join
    client.reset()
    seconds = await client.run(warmup, requests)
    filled = client.statuses.get("filled", 0)
    if filled < requests // 2:
        raise RuntimeError(f"most requests were not filled: {dict(client.statuses)}; {client.first_problem}")
    return client.summary(requests, seconds)


async def run_router(
    workdir: Path, bootstrap: str, *, requests: int, window: int, warmup: int
) -> dict[str, Any]:
    """Start simulator and router daemon, push `requests` orders through Kafka; return rate and latency."""
    async with ExchangeSimulator(("binance", "bybit"), (_SYMBOL,), seed=11) as sim:
        cfg = router_config(bootstrap, sim, workdir / "state")
        await create_bench_topics(cfg)
        daemon = Daemon(cfg, roles=frozenset({"feeds", "route"}), freeze_heap=True)  # `smartroute route`
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.run(stop), name="bench-router-daemon")
        client = LoadClient(cfg, window, _SYMBOL)
        try:
            assert daemon.router_service is not None
            async with asyncio.timeout(_STARTUP_TIMEOUT_S):
                await daemon.router_service.reconciled.wait()
            result = await _measure(client, requests=requests, warmup=warmup)
        finally:
            await client.stop()
            stop.set()
            await running
    return {"window": window, **result}


async def run_bare(
    bootstrap: str, *, requests: int, window: int, warmup: int, result_bytes: int, per_partition: bool
) -> dict[str, Any]:
    """Run the bare consume→produce loop and push `requests` through it; return rate and latency."""
    cfg = bench_config(bootstrap)
    await create_bench_topics(cfg)
    stop, ready = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(
        serve_bare(cfg, stop, ready, result_bytes, per_partition=per_partition), name="bench-bare-loop"
    )
    client = LoadClient(cfg, window, _SYMBOL)
    try:
        async with asyncio.timeout(_STARTUP_TIMEOUT_S):
            await ready.wait()
        result = await _measure(client, requests=requests, warmup=warmup)
    finally:
        await client.stop()
        stop.set()
        await serving
    return {"window": window, **result}
