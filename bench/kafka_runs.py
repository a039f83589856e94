"""The Kafka scenarios' runs: router vs bare loop on each broker, feed isolation, reaction time.

Each starts its broker(s) here (`bench.harness.started_broker`) and runs fresh
worker processes against it; ratios are taken within a round (same broker,
back to back) and their median reported.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.harness import Harness, progress, started_broker
from daemon.postgres_server import LocalPostgres

_FIGURES = ("requests_per_s", "p50_ms", "p99_ms")
# The router, the bare loop per partition (the router's first loop shape), and per whole fetch.
LOOPS = ("router", "bare", "bare_fetch")


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(run[key]) for run in runs)


def run_router_kafka(harness: Harness) -> dict[str, Any]:
    """Interleave router and bare-loop runs on each broker; summarize medians and router/bare ratios."""
    s = harness.settings
    load = ["--requests", str(s.router_requests), "--window", str(s.router_window)]
    load += ["--warmup", str(s.router_warmup)]
    by_broker: dict[str, Any] = {}
    for kind in s.brokers:
        rounds = []
        with started_broker(kind, harness.workdir / f"router-{kind}") as bootstrap:
            for number in range(s.router_runs):
                progress(f"router_kafka on {kind}, round {number + 1}/{s.router_runs}: {', '.join(LOOPS)}")
                router = harness.worker("router", "--bootstrap", bootstrap, *load)
                bare = ("--bootstrap", bootstrap, *load, "--result-bytes", str(int(router["result_bytes"])))
                rounds.append(
                    {
                        "router": router,
                        "bare": harness.worker("bare", *bare),
                        "bare_fetch": harness.worker("bare", *bare, "--whole-fetch"),
                    }
                )
        summary: dict[str, Any] = {
            loop: {key: _median([r[loop] for r in rounds], key) for key in _FIGURES} for loop in LOOPS
        }
        for loop in LOOPS[1:]:
            summary[f"router/{loop}"] = statistics.median(
                r["router"]["requests_per_s"] / r[loop]["requests_per_s"] for r in rounds
            )
        by_broker[kind] = {"rounds": rounds, "summary": summary}
    return {"window": s.router_window, "requests": s.router_requests, "brokers": by_broker}


def run_scaleout(harness: Harness) -> dict[str, Any]:
    """Interleave 1 and 2 route processes in one group on Apache Kafka; the ratio is within each round."""
    s = harness.settings
    load = ["--requests", str(s.router_requests), "--window", str(s.router_window)]
    load += ["--warmup", str(s.router_warmup)]
    rounds = []
    with (
        started_broker("apache", harness.workdir / "scaleout") as bootstrap,
        LocalPostgres(log_dir=harness.workdir / "scaleout") as postgres,
    ):
        for number in range(s.router_runs):
            progress(f"scaleout on apache, round {number + 1}/{s.router_runs}: 1 router, 2 routers")
            runs = {}
            for routers in ("1", "2"):  # each run its own empty ledger database
                ledger_url = postgres.create_database(f"scaleout_{number}_{routers}")
                runs[routers] = harness.worker(
                    "scaleout",
                    "--bootstrap",
                    bootstrap,
                    "--routers",
                    routers,
                    "--ledger-url",
                    ledger_url,
                    *load,
                )
            rounds.append(runs)
    summary: dict[str, Any] = {
        n: {key: _median([r[n] for r in rounds], key) for key in (*_FIGURES, "router_cores")}
        for n in ("1", "2")
    }
    summary["ratio"] = statistics.median(r["2"]["requests_per_s"] / r["1"]["requests_per_s"] for r in rounds)
    summary |= {"window": s.router_window, "requests": s.router_requests}
    return {"rounds": rounds, "summary": summary}


def run_isolation(harness: Harness) -> dict[str, Any]:
    """Run the feed-isolation worker once on Tansu (its phases alternate idle and loaded inside)."""
    s = harness.settings
    progress(
        f"isolation: {s.isolation_rounds} × (idle, loaded) phases of {s.isolation_phase_s:.0f} s on tansu"
    )
    with started_broker("tansu", harness.workdir / "isolation") as bootstrap:
        result = harness.worker(
            "isolation", "--bootstrap", bootstrap, "--phase-s", str(s.isolation_phase_s),
            "--rounds", str(s.isolation_rounds), "--window", str(s.router_window),
        )  # fmt: skip
    return {"runs": [result], "summary": result["summary"]}


def run_reaction(harness: Harness) -> dict[str, Any]:
    """Run the reaction-time worker once on Tansu: reaction path, then the bare Kafka round trip."""
    s = harness.settings
    progress(f"reaction: {s.reaction_duration_s:.0f} s of opportunities, then the Kafka round trip, on tansu")
    with started_broker("tansu", harness.workdir / "reaction") as bootstrap:
        result = harness.worker(
            "reaction", "--bootstrap", bootstrap, "--duration-s", str(s.reaction_duration_s)
        )
    return {"runs": [result], "summary": result["summary"]}
