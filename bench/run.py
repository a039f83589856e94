"""The bench harness: `python -m bench.run` (full, what `make bench` runs) or `--tiny` (seconds, for tests).

Every run is a fresh worker process (`bench.worker`) on loopback in this
process tree. Ingest rounds are interleaved (a, a_raw, a_http, b, c, d, a, ...),
so that drift of the machine hits every client alike; ratios are taken within
each round and their median reported; so are the Kafka scenarios' rounds
(router then bare loops, 1 then 2 routers: `bench.kafka_runs`). It prints
medians and ratios, never a pass/fail on time, and writes `<out>/<date>.json`
and `<out>/<date>.md`.

Tiny mode runs every scenario on a few thousand messages, a few dozen order
requests, 2-3 s phases and a 3 s soak; it skips a peer whose package (the
`bench` extra) is not installed, saying so. The full bench needs them all.
`--window N` sets the requests in flight of router_kafka, isolation and
scaleout; `--brokers tansu` runs router_kafka on Tansu only.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import IO, Any

import orjson

from bench.harness import BROKERS, FULL, REPO, TINY, BenchError, Harness, Settings, progress
from bench.ingest import LABELS, REQUIRES
from bench.kafka_runs import run_isolation, run_reaction, run_router_kafka, run_scaleout
from bench.report import machine, markdown, summarize_ingest


def available_clients(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """Return the clients to run and, in tiny mode only, the peers skipped for a missing package."""
    clients, skipped = [], {}
    for name in settings.clients:
        package = REQUIRES.get(name)
        if package is not None and importlib.util.find_spec(package) is None:
            if settings.mode != "tiny":
                raise BenchError(f"{package} is not installed: `pip install -e '.[bench]'` (make bench does)")
            skipped[name] = f"{package} not installed (the bench extra)"
            continue
        clients.append(name)
    return clients, skipped


def run_ingest(harness: Harness) -> dict[str, Any]:
    """Run the ingest rounds against one frame-server process; return per-round results and summary."""
    s = harness.settings
    clients, skipped = available_clients(s)
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.server", "--frames", str(s.frames)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line:
            raise BenchError(f"the frame server exited with {server.wait()} before listening")
        port = str(orjson.loads(line)["port"])
        cpu = _CpuClock(server.pid)
        rounds: list[dict[str, Any]] = []
        for number in range(s.runs):
            results = {}
            for name in clients:
                progress(f"ingest round {number + 1}/{s.runs}: {name}")
                started = cpu.seconds()
                result = harness.worker("ingest", "--client", name, "--port", port, "--frames", str(s.frames))
                if started is not None:
                    # How busy the server was while this client read: near 100 % would mean it set the pace.
                    result["server_cpu_share"] = (cpu.seconds() or 0.0) - started
                    result["server_cpu_share"] /= result["seconds"]
                results[name] = result
            rounds.append(results)
    finally:
        _close(server.stdin)
        server.wait(timeout=30)
    return {"rounds": rounds, "skipped": skipped, **summarize_ingest(rounds)}


class _CpuClock:
    """CPU seconds a process has used so far, when psutil (the bench extra) is installed."""

    def __init__(self, pid: int) -> None:
        try:
            import psutil  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415
        except ImportError:
            self._process = None
        else:
            self._process = psutil.Process(pid)

    def seconds(self) -> float | None:
        if self._process is None:
            return None
        times = self._process.cpu_times()
        return float(times.user + times.system)


def _close(stream: IO[bytes] | None) -> None:
    if stream is not None:
        stream.close()


def run_latency(harness: Harness) -> dict[str, Any]:
    """Run the detector-latency scenario; summarize each figure by its median over runs."""
    s = harness.settings
    runs = []
    for number in range(s.runs):
        progress(f"detector latency run {number + 1}/{s.runs}")
        runs.append(harness.worker("latency", "--quotes", str(s.latency_quotes)))
    # Medians of each figure over runs (each run's p50 <= p99 <= ..., so their medians keep that order).
    summary = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    summary |= {"venues": 5, "symbols": 200}
    return {"runs": runs, "summary": summary}


def run_memory(harness: Harness) -> dict[str, Any]:
    """Run the soak once (growth over a long run is a trend, not a distribution)."""
    s = harness.settings
    progress(f"memory soak: {s.soak_duration_s:.0f} s after {s.soak_warmup_s:.0f} s warm-up")
    result = harness.worker(
        "memory", "--symbols", str(s.soak_symbols), "--warmup-s", str(s.soak_warmup_s),
        "--duration-s", str(s.soak_duration_s),
    )  # fmt: skip
    return {"runs": [result], "summary": result}


SCENARIOS = {
    "ingest": run_ingest,
    "latency": run_latency,
    "router_kafka": run_router_kafka,
    "isolation": run_isolation,
    "reaction": run_reaction,
    "scaleout": run_scaleout,
    "memory": run_memory,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench, print the table, write JSON and Markdown results."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a few seconds per scenario, for tests")
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default: bench/results; tiny: none)"
    )
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios to run")
    parser.add_argument("--window", type=int, default=None, help="router_kafka: requests in flight")
    parser.add_argument(
        "--brokers", default=None, help=f"router_kafka: comma-separated, of {','.join(BROKERS)}"
    )
    args = parser.parse_args(argv)
    settings = TINY if args.tiny else FULL
    if args.window is not None:
        settings = replace(settings, router_window=args.window)
    if args.brokers is not None:
        brokers = tuple(name.strip() for name in args.brokers.split(",") if name.strip())
        if not brokers or set(brokers) - set(BROKERS):
            parser.error(f"--brokers takes some of {', '.join(BROKERS)}, got {args.brokers!r}")
        settings = replace(settings, brokers=brokers)
    out = args.out if args.out is not None or args.tiny else REPO / "bench" / "results"
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := set(chosen) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    date = datetime.date.today().isoformat()
    results: dict[str, Any] = {
        "date": date,
        "mode": settings.mode,
        "machine": machine(),
        "settings": asdict(settings),
    }
    try:
        with tempfile.TemporaryDirectory(prefix="smartroute-bench-") as tmp:
            harness = Harness(settings, Path(tmp))
            for name in chosen:
                results[name] = SCENARIOS[name](harness)
    except BenchError as exc:
        sys.stderr.write(f"bench: {exc}\n")
        return 1
    results["machine"]["load_average_1m_end"] = os.getloadavg()[0]
    table = markdown(results, LABELS)
    sys.stdout.write(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{date}.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
        (out / f"{date}.md").write_text(table)
        sys.stdout.write(f"\nwritten: {out / date}.json and .md\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
