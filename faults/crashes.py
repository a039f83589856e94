"""Scenario 1, router crashes: a router SIGKILLed at seeded points of its work, restarted each time.

A router process (`tests/integration/router_child.py`: `smartroute route` — paper, the exchange
simulator's Binance and Bybit, its SQLite ledger — whose executor appends every leg it sends to a
sent log, standing in for the venue's order log) answers N order requests, sent in K + 1 slices.
For each of the first K slices a new process starts with a crash point on a seeded request of
that slice, at a seeded step: before or after the ledger claims it, after its leg intent is
written, as its leg is about to reach the venue, right after the venue answered, after the
outcome or the result is written, or once its results are acknowledged but the offset is not
committed. The process SIGKILLs itself there; when the point is never reached (a request refused
before any leg) it is SIGKILLed from outside once its slice is answered. The next process on the
same ledger and consumer group finishes the work; the last runs without a crash point.

Figures: legs the venue got more than once (sent-log lines per client order id, beyond the
first) and ledger legs whose client order id repeats (0); requests without exactly one distinct
result (0); kills at a crash point and from outside (measured).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Final

from bench.transport import create_bench_topics, order_request
from connectors.sim import ExchangeSimulator
from daemon.config import Config, load_config
from faults.orders import Requests, status_of
from faults.scenario import Context, Figure, Outcome, Scenario, measured, zero
from router.ledger.schema import FILE_NAME

SYMBOL: Final = "BTC-USDT"
REPO: Final = Path(__file__).resolve().parents[1]
CHILD: Final = REPO / "tests" / "integration" / "router_child.py"
STEPS: Final = (
    "step:before_claim",
    "step:after_claim",
    "step:after_intent",
    "leg",
    "step:after_send",
    "step:after_outcome",
    "step:after_result",
    "step:before_commit",
)
_ANSWER_TIMEOUT_S: Final = 120.0
_QUIET_S: Final = 2.0


def crash_point(step: str, request_id: str) -> str:
    """The router child's crash argument for `step` of `request_id` (see router_child.py)."""
    return f"leg:{request_id}:0" if step == "leg" else f"{step}:{request_id}"


def write_config(path: Path, bootstrap: str, sim: ExchangeSimulator, state_dir: Path) -> Config:
    """Write the router's TOML (fresh topics and group, a short session) and return it loaded."""
    tag = uuid.uuid4().hex[:8]
    venues = "".join(
        f'\n[venues.{venue}]\nsymbols = ["{SYMBOL}"]\nws_url = "{sim.ws_url(venue)}"\n'
        for venue in ("binance", "bybit")
    )
    path.write_text(
        f'[daemon]\nhttp_port = 0\nlog_level = "warning"\nstate_dir = "{state_dir}"\n\n'
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic_prefix = "crash{tag}."\n\n'
        f'[router]\ngroup_id = "crash-router-{tag}"\nsession_timeout_ms = 2000\n'
        f"max_request_age_ms = 600000\n\n[risk]\nmax_orders_per_second = 1000000\n{venues}"
    )
    return load_config(path, environ={})


def duplicates(sent_log: Path, state_dir: Path) -> dict[str, int]:
    """Count legs sent twice: sent-log lines beyond the first per client order id, and in the ledger."""
    lines = sent_log.read_text().splitlines() if sent_log.exists() else []
    sent = Counter(line.split()[2] for line in lines)
    with sqlite3.connect(f"file:{state_dir / FILE_NAME}?mode=ro", uri=True) as ledger:
        legs, distinct = ledger.execute(
            "SELECT count(*), count(DISTINCT client_order_id) FROM legs"
        ).fetchone()
        (claimed,) = ledger.execute("SELECT count(*) FROM requests").fetchone()
    return {
        "sent": len(lines),
        "sent_twice": sum(count - 1 for count in sent.values()),
        "ledger_legs": int(legs),
        "ledger_repeated_ids": int(legs) - int(distinct),
        "requests_claimed": int(claimed),
    }


async def start_child(
    config: Path, sent_log: Path, crash: str | None, log: Path
) -> asyncio.subprocess.Process:
    """Start one router child process (its own session, its stderr appended to `log`)."""
    with log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), str(config), str(sent_log), *([crash] if crash else []),
            cwd=REPO, env={k: v for k, v in os.environ.items() if not k.startswith("SMARTROUTE_")},
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip


async def answered_or_died(client: Requests, ids: list[str], child: asyncio.subprocess.Process) -> bool:
    """Read results until every id is answered or the child exited; True when it exited."""
    async with asyncio.timeout(_ANSWER_TIMEOUT_S):
        while child.returncode is None and any(rid not in client.results for rid in ids):
            await client.poll()
    return child.returncode is not None


async def kill(child: asyncio.subprocess.Process) -> None:
    """SIGKILL the child (if still running) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGKILL)
    await child.wait()


async def run_scenario(context: Context) -> Outcome:
    """Answer N requests through K SIGKILLed routers and a last one; return the figures."""
    count, kills = (30, 3) if context.small else (2000, 100)
    rng = random.Random(context.seed)
    context.workdir.mkdir(parents=True, exist_ok=True)
    state_dir, sent_log, log = (
        context.workdir / "state",
        context.workdir / "sent.log",
        context.workdir / "router.log",
    )
    ids = [f"crash-{context.seed}-{n}" for n in range(count)]
    values = dict(zip(ids, (order_request(rid, n, SYMBOL) for n, rid in enumerate(ids)), strict=True))
    bounds = [round(count * i / (kills + 1)) for i in range(kills + 2)]
    slices = [ids[bounds[i] : bounds[i + 1]] for i in range(kills + 1)]
    points: list[dict[str, str]] = []
    exits: Counter[str] = Counter()
    async with (
        context.kafka() as bootstrap,
        ExchangeSimulator(("binance", "bybit"), (SYMBOL,), seed=context.seed) as sim,
    ):
        cfg = write_config(context.workdir / "smartroute.toml", bootstrap, sim, state_dir)
        await create_bench_topics(cfg)
        async with Requests(cfg) as client:
            for number, chunk in enumerate(slices):
                crash = None
                if number < kills:
                    step, target = rng.choice(STEPS), rng.choice(chunk)
                    crash = crash_point(step, target)
                    points.append({"step": step, "request_id": target})
                child = await start_child(context.workdir / "smartroute.toml", sent_log, crash, log)
                try:
                    await client.send(values[rid] for rid in chunk)
                    if crash is None:
                        with contextlib.suppress(TimeoutError):  # an unanswered request is a figure
                            await client.wait_for(ids, _ANSWER_TIMEOUT_S)
                        await client.settle(_QUIET_S, _ANSWER_TIMEOUT_S)
                        child.send_signal(signal.SIGTERM)
                        exits["last_exit_code"] = await asyncio.wait_for(child.wait(), 30)
                    elif await answered_or_died(client, chunk, child):
                        exits["at_crash_point" if child.returncode == -signal.SIGKILL else "other_exit"] += 1
                    else:
                        await kill(child)
                        exits["from_outside"] += 1
                finally:
                    if child.returncode is None:
                        await kill(child)
        counts = duplicates(sent_log, state_dir)
    distinct = {rid: len(set(client.raw.get(rid, ()))) for rid in ids}
    firsts = [client.results[rid] for rid in ids if client.results.get(rid)]
    not_one = sorted(rid for rid, n in distinct.items() if n != 1)
    figures: list[Figure] = [
        zero("legs_sent_twice", "legs the venue got more than once", counts["sent_twice"]),
        zero(
            "ledger_legs_repeated", "ledger legs whose client order id repeats", counts["ledger_repeated_ids"]
        ),
        zero("results_not_one", "requests without exactly one distinct result", len(not_one)),
        measured("other_exits", "router processes that exited other than by a kill", exits["other_exit"]),
        measured("kills_at_crash_point", "SIGKILLs at a crash point", exits["at_crash_point"]),
        measured(
            "kills_from_outside", "SIGKILLs from outside (crash point not reached)", exits["from_outside"]
        ),
        measured("legs_sent", "legs sent to the venues", counts["sent"]),
        measured("filled", "requests filled", sum(status_of(results[0]) == "filled" for results in firsts)),
        measured(
            "settled_after_interruption",
            "requests a crash interrupted, settled from the ledger and the executor",
            sum("after an interruption" in str(results[0].get("message")) for results in firsts),
        ),
    ]
    details = {
        "ledger": counts,
        "exits": dict(exits),
        "crash_points": points,
        "steps": dict(Counter(point["step"] for point in points)),
        "statuses": dict(Counter(status_of(results[0]) for results in firsts)),
        "not_one": {rid: distinct[rid] for rid in not_one[:20]},
        "first_unfilled": next(
            (r[0] for r in client.results.values() if r[0].get("status") != "filled"), None
        ),
        "deliveries": sum(len(client.raw.get(rid, ())) for rid in ids),
    }
    return Outcome(figures, size={"requests": count, "kills": kills}, details=details)


def _limit(context: Context) -> float:
    return 180.0 if context.small else 1800.0


SCENARIO: Final = Scenario(1, "crashes", "Router crashes", run_scenario, _limit)
