"""Scenario 4, rebalance churn: routers of one consumer group on one PostgreSQL ledger, killed and joining.

Two or three router processes (`tests/integration/router_child.py`, i.e. `smartroute route`:
paper, the exchange simulator's Binance and Bybit, each with its own state_dir and sent log, all
with the same `[router] ledger_url` on a local PostgreSQL server and the same consumer group)
answer N order requests sent at a steady rate. Every few seconds a seeded router is SIGKILLed
and a new one joins. A request claimed by a router that died is answered by whoever takes over
its claim once its lease expired, from the ledger and the executor, never by sending again.

Figures: legs sent more than once across every router's sent log (0); requests never answered
(0); requests with more than one distinct result (0); offset commits the routers logged as
refused (`router_commit_failed`, measured: expected around rebalances), kills, claims taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson

from bench.transport import create_bench_topics, order_request
from connectors.sim import ExchangeSimulator
from daemon.config import load_config
from daemon.postgres_server import LocalPostgres
from faults.orders import Requests
from faults.scenario import Context, Figure, Outcome, Scenario, measured, zero

SYMBOL: Final = "BTC-USDT"
REPO: Final = Path(__file__).resolve().parents[1]
CHILD: Final = REPO / "tests" / "integration" / "router_child.py"
LEASE_MS: Final = 2000
_ANSWER_TIMEOUT_S: Final = 120.0
_QUIET_S: Final = 2.0


@dataclass
class Routers:
    """The router processes by name, each in its own folder under `workdir`, and those killed."""

    workdir: Path
    shared_toml: str
    running: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)
    started: int = 0

    def config(self, name: str) -> Path:
        """Write router `name`'s config (its own state_dir, the shared rest) and return its path."""
        home = self.workdir / name
        home.mkdir(parents=True, exist_ok=True)
        path = home / "smartroute.toml"
        path.write_text(f'[daemon]\nhttp_port = 0\nstate_dir = "{home / "state"}"\n\n{self.shared_toml}')
        return path

    async def start(self) -> None:
        """Start one more router process."""
        self.started += 1
        name = f"router-{self.started}"
        config, home = self.config(name), self.workdir / name
        with (home / "router.log").open("wb") as log:
            self.running[name] = await asyncio.create_subprocess_exec(
                sys.executable, str(CHILD), str(config), str(home / "sent.log"),
                cwd=REPO, env={k: v for k, v in os.environ.items() if not k.startswith("SMARTROUTE_")},
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    async def kill(self, name: str) -> None:
        """SIGKILL router `name` and reap it."""
        process = self.running.pop(name)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        self.killed.append(name)

    async def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every running router (SIGKILL past 20 s); return their exit codes."""
        for process in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
        return {name: process.returncode for name, process in self.running.items()}

    def events(self) -> Counter[str]:
        """Count the routers' log events by name."""
        return Counter(
            orjson.loads(line).get("event")
            for path in self.workdir.glob("router-*/router.log")
            for line in path.read_text(errors="replace").splitlines()
            if line.startswith("{")
        )

    def sent(self) -> Counter[str]:
        """Count each client order id across every router's sent log."""
        return Counter(
            line.split()[2]
            for path in self.workdir.glob("router-*/sent.log")
            for line in path.read_text().splitlines()
        )


async def run_scenario(context: Context) -> Outcome:
    """Send N requests while routers are killed and join; return the figures."""
    count, routers, churn_s, rate = (60, 2, 1.0, 20) if context.small else (2000, 3, 3.0, 100)
    rng = random.Random(context.seed)
    context.workdir.mkdir(parents=True, exist_ok=True)
    ids = [f"churn-{context.seed}-{n}" for n in range(count)]
    tag = uuid.uuid4().hex[:8]
    async with (
        LocalPostgres(log_dir=context.workdir / "postgres", stop_grace_s=5.0) as postgres,
        context.kafka() as bootstrap,
        ExchangeSimulator(("binance", "bybit"), (SYMBOL,), seed=context.seed) as sim,
    ):
        venues = "".join(
            f'\n[venues.{venue}]\nsymbols = ["{SYMBOL}"]\nws_url = "{sim.ws_url(venue)}"\n'
            for venue in ("binance", "bybit")
        )
        desk = Routers(
            context.workdir,
            f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic_prefix = "churn{tag}."\n\n'
            f'[router]\ngroup_id = "churn-{tag}"\nledger_url = "{postgres.create_database("churn")}"\n'
            f"lease_ms = {LEASE_MS}\nsession_timeout_ms = 2000\nmax_request_age_ms = 600000\n\n"
            f"[risk]\nmax_orders_per_second = 1000000\n{venues}",
        )
        cfg = load_config(desk.config("client"), environ={})
        await create_bench_topics(cfg)
        async with Requests(cfg) as client:
            try:
                for _ in range(routers):
                    await desk.start()
                await client.send([order_request(ids[0], 0, SYMBOL)])
                await client.wait_for(ids[:1], _ANSWER_TIMEOUT_S)  # serving: the churn starts now
                loop = asyncio.get_running_loop()
                next_churn = loop.time() + churn_s
                for n in range(1, count):
                    await client.send([order_request(ids[n], n, SYMBOL)])
                    await asyncio.sleep(1 / rate)
                    if loop.time() >= next_churn:
                        await desk.kill(rng.choice(sorted(desk.running)))
                        await desk.start()
                        next_churn = loop.time() + churn_s
                with contextlib.suppress(TimeoutError):  # an unanswered request is a figure
                    await client.wait_for(ids, _ANSWER_TIMEOUT_S)
                await client.settle(_QUIET_S, _ANSWER_TIMEOUT_S)
                exited = {name: p.returncode for name, p in desk.running.items() if p.returncode is not None}
            finally:
                codes = await desk.stop_all()
    sent, events = desk.sent(), desk.events()
    distinct = {rid: len(set(client.raw.get(rid, ()))) for rid in ids}
    figures: list[Figure] = [
        zero("legs_sent_twice", "legs sent more than once", sum(n - 1 for n in sent.values())),
        zero("lost", "requests never answered", sum(n == 0 for n in distinct.values())),
        zero(
            "results_differing",
            "requests with more than one distinct result",
            sum(n > 1 for n in distinct.values()),
        ),
        measured(
            "commit_failures", "offset commits refused (router_commit_failed)", events["router_commit_failed"]
        ),
        measured("kills", "routers killed", len(desk.killed)),
        measured(
            "taken_over",
            "claims taken over from a dead router",
            events["order_taken_over"] + events["ledger_claim_taken_over"],
        ),
    ]
    firsts = [client.results[rid][0] for rid in ids if client.results.get(rid)]
    details = {
        "exited_on_their_own": exited,
        "exit_codes_at_stop": codes,
        "killed": desk.killed,
        "legs_sent": sum(sent.values()),
        "statuses": dict(Counter(str(result.get("status")) for result in firsts)),
        "revocations": events["router_partitions_revoked"],
        "events": {
            k: events[k] for k in ("order_taken_over", "ledger_claim_taken_over", "router_commit_failed")
        },
    }
    size = {"requests": count, "routers": routers, "churn_s": churn_s, "requests_per_s": rate}
    return Outcome(figures, size=size, details=details)


def _limit(context: Context) -> float:
    return 120.0 if context.small else 1200.0


SCENARIO: Final = Scenario(4, "churn", "Rebalance churn", run_scenario, _limit)
