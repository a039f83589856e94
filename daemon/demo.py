"""`smartroute demo`: the whole system on one machine, for a first look.

Starts the embedded Kafka broker (Tansu) and the exchange simulator, runs
`smartroute run` as a child process against both, and lets the demo's desk
(`daemon.demo_desk`) print the arbitrage opportunities it publishes, read back
from Kafka as they arrive. The desk sends a market order, then arbitrage
requests on the first opportunities opened once the router answers, and
reports each one's reaction time: opportunity published (its `detected_ns`) →
order executed (the result's `completed_ns`).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from connectors.registry import ADAPTERS
from connectors.sim import ExchangeSimulator
from connectors.types import VENUE_IDS
from daemon.broker import EmbeddedBroker
from daemon.demo_desk import DEMO_USER, Desk, reaction_summary, say
from daemon.logs import configure_logging
from router.signatures import public_key_text

DEMO_VENUES = VENUE_IDS
# Each venue keeps a local order book of this many levels, synced its own way (REST snapshot + diffs,
# snapshot + deltas, sequence numbers, checksums): the detector sizes opportunities on depth.
DEMO_DEPTH = {"binance": 20, "bybit": 50, "okx": 20, "coinbase": 20, "kraken": 10}
DEMO_SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
# Dislocations often enough that a first look shows opportunities within seconds (~25 a minute).
DEMO_DISLOCATION_PROBABILITY = 0.02
_STOP_GRACE_S = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def demo_config(
    bootstrap: str, sim: ExchangeSimulator, state_dir: Path, http_port: int, user_key: Ed25519PublicKey
) -> str:
    """Return the TOML config the demo's daemon runs with: orders must be signed with `user_key`."""
    lines = [
        "[daemon]",
        'mode = "paper"',
        f"http_port = {http_port}",
        f'state_dir = "{state_dir}"',
        "",
        "[kafka]",
        f'bootstrap_servers = "{bootstrap}"',
        "",
        "[cache]",
        "ttl_ms = 30000",
        "max_quote_age_ms = 1500",
        "",
        "[detector]",
        "min_net_profit_bps = 5",
        "max_notional = 10000",
        "",
        "[router]",
        "session_timeout_ms = 3000  # a lone demo router joins its consumer group in ~1.5 s",
        "",
        "[security]",
        "require_signatures = true  # as live: every request must be signed by its user",
        "",
        f"[users.{DEMO_USER}]",
        f'public_keys = ["{public_key_text(user_key)}"]',
    ]
    for venue in DEMO_VENUES:
        symbols = ", ".join(f'"{s}"' for s in DEMO_SYMBOLS)
        lines += ["", f"[venues.{venue}]", f"symbols = [{symbols}]", f'ws_url = "{sim.ws_url(venue)}"']
        lines += [f"depth = {DEMO_DEPTH[venue]}"]
        if ADAPTERS[venue].default_rest_url is not None:  # its books start from a REST snapshot
            lines += [f'rest_url = "{sim.rest_url(venue)}"']
    return "\n".join(lines) + "\n"


async def run_demo(stop: asyncio.Event, *, duration_s: float | None = None, seed: int | None = None) -> None:
    """Run broker, simulator and daemon; print opportunities until `stop` is set or `duration_s` passes."""
    workdir = Path(tempfile.mkdtemp(prefix="smartroute-demo-"))
    started = time.monotonic()
    with (workdir / "demo.log").open("a") as demo_log:
        configure_logging("info", demo_log)  # the terminal is for the opportunities
        await _run(workdir, started, stop, duration_s, seed)


async def _run(
    workdir: Path, started: float, stop: asyncio.Event, duration_s: float | None, seed: int | None
) -> None:
    say(f"smartroute demo — working directory {workdir}")
    async with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        say(f"  kafka broker (Tansu) on {broker.bootstrap_servers}")
        sim = ExchangeSimulator(
            DEMO_VENUES, DEMO_SYMBOLS, seed=seed, dislocation_probability=DEMO_DISLOCATION_PROBABILITY
        )
        await sim.start()
        try:
            for venue in DEMO_VENUES:
                say(f"  exchange simulator: {venue:<8} {sim.ws_url(venue)}")
            http_port = _free_port()
            config = workdir / "smartroute.toml"
            key = Ed25519PrivateKey.generate()  # the demo desk's signing key, never written anywhere
            state = workdir / "state"
            config.write_text(demo_config(broker.bootstrap_servers, sim, state, http_port, key.public_key()))
            daemon = await _start_daemon(config, workdir / "daemon.log")
            say(
                f"  daemon pid {daemon.pid}: logs {workdir / 'daemon.log'}, metrics http://127.0.0.1:{http_port}/metrics"
            )
            say("  opportunities from smartroute.opportunities; the demo also sends a market order and, once")
            say("  the router answered it, arbitrage requests for the next opportunities opened to")
            say("  smartroute.orders, each with its reaction time (Ctrl-C to stop)\n")
            watcher = Desk(broker.bootstrap_servers, key)
            try:
                counts = await watcher.watch(stop, duration_s, started, daemon)
            finally:
                await _stop_daemon(daemon)
        finally:
            await sim.close()
    results = counts.pop("results", 0)
    summary = ", ".join(f"{n} {event}" for event, n in sorted(counts.items())) or "none"
    elapsed = time.monotonic() - started
    say(f"\nstopped after {elapsed:.0f} s; opportunity events read back from Kafka: {summary}")
    say(f"order results read back from Kafka: {results}")
    say(reaction_summary(watcher.reactions))


async def _start_daemon(config: Path, log_path: Path) -> asyncio.subprocess.Process:
    log_file = log_path.open("wb")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon.cli",
            "run",
            "--config",
            str(config),
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
    finally:
        log_file.close()  # the child holds its own descriptor


async def _stop_daemon(daemon: asyncio.subprocess.Process) -> None:
    if daemon.returncode is not None:
        return
    daemon.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(daemon.wait(), _STOP_GRACE_S)
    except TimeoutError:
        daemon.kill()
        await daemon.wait()
