"""The bench harness: `python -m bench.run` (full, what `make bench` runs) or `--tiny` (seconds, for tests).

Every run is a fresh worker process (`bench.worker`) on loopback in this
process tree. Ingest rounds are interleaved (a, a_raw, a_http, b, c, d, a, ...),
so that drift of the machine hits every client alike; ratios are taken within
each round and their median reported. It prints medians and ratios, never a
pass/fail on time, and writes `<out>/<date>.json` and `<out>/<date>.md`.

Tiny mode runs every scenario on a few thousand messages and a 3 s soak; it
skips a peer whose package (the `bench` extra) is not installed, saying so.
The full bench needs them all.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from bench.ingest import LABELS, REQUIRES
from bench.report import machine, markdown, summarize_ingest

REPO = Path(__file__).resolve().parents[1]
_LOG_TAIL_CHARS = 4000


@dataclass(frozen=True, slots=True)
class Settings:
    """How much each scenario does."""

    mode: str
    runs: int
    frames: int
    clients: tuple[str, ...]
    latency_quotes: int
    router_requests: int
    router_window: int
    router_warmup: int
    router_runs: int
    soak_symbols: int
    soak_warmup_s: float
    soak_duration_s: float
    timeout_s: float


FULL = Settings(
    mode="full",
    runs=5,
    frames=200_000,
    clients=("a", "a_raw", "a_http", "b", "c", "d"),
    latency_quotes=200_000,
    router_requests=1000,
    router_window=32,
    router_warmup=50,
    router_runs=5,
    soak_symbols=200,
    soak_warmup_s=10.0,
    soak_duration_s=300.0,
    timeout_s=600.0,
)
TINY = Settings(
    mode="tiny",
    runs=2,
    frames=3000,
    clients=("a", "a_raw", "a_http", "b", "c", "d"),
    latency_quotes=5000,
    router_requests=30,
    router_window=8,
    router_warmup=5,
    router_runs=1,
    soak_symbols=10,
    soak_warmup_s=1.0,
    soak_duration_s=3.0,
    timeout_s=120.0,
)


class BenchError(Exception):
    """A bench run failed; the message carries the end of its log."""


class Harness:
    """Run worker processes, collect their results."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self._count = 0

    def worker(self, scenario: str, *args: str) -> dict[str, Any]:
        """Run one worker process for `scenario` and return the result it wrote."""
        self._count += 1
        result = self.workdir / f"run-{self._count}.json"
        log = self.workdir / f"run-{self._count}.log"
        command = [sys.executable, "-m", "bench.worker", scenario, *args, "--result", str(result)]
        with log.open("wb") as out:
            try:
                code = subprocess.run(
                    command, cwd=REPO, stdout=out, stderr=out, timeout=self.settings.timeout_s, check=False
                ).returncode
            except subprocess.TimeoutExpired:
                code = None
        if code != 0 or not result.exists():
            tail = log.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
            what = "timed out" if code is None else f"exited with {code}"
            raise BenchError(f"bench worker {scenario} {' '.join(args)} {what}:\n{tail}")
        value: dict[str, Any] = orjson.loads(result.read_bytes())
        return value


def _progress(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


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
                _progress(f"ingest round {number + 1}/{s.runs}: {name}")
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
        _progress(f"detector latency run {number + 1}/{s.runs}")
        runs.append(harness.worker("latency", "--quotes", str(s.latency_quotes)))
    # Medians of each figure over runs (each run's p50 <= p99 <= ..., so their medians keep that order).
    summary = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    summary |= {"venues": 5, "symbols": 200}
    return {"runs": runs, "summary": summary}


def run_router(harness: Harness) -> dict[str, Any]:
    """Run the router scenario; summarize with medians."""
    s = harness.settings
    runs = []
    for number in range(s.router_runs):
        _progress(f"router run {number + 1}/{s.router_runs}")
        runs.append(
            harness.worker(
                "router", "--requests", str(s.router_requests), "--window", str(s.router_window),
                "--warmup", str(s.router_warmup),
            )
        )  # fmt: skip
    summary = {
        "window": s.router_window,
        **{
            key: statistics.median(run[key] for run in runs) for key in ("requests_per_s", "p50_ms", "p99_ms")
        },
    }
    return {"runs": runs, "summary": summary}


def run_memory(harness: Harness) -> dict[str, Any]:
    """Run the soak once (growth over a long run is a trend, not a distribution)."""
    s = harness.settings
    _progress(f"memory soak: {s.soak_duration_s:.0f} s after {s.soak_warmup_s:.0f} s warm-up")
    result = harness.worker(
        "memory", "--symbols", str(s.soak_symbols), "--warmup-s", str(s.soak_warmup_s),
        "--duration-s", str(s.soak_duration_s),
    )  # fmt: skip
    return {"runs": [result], "summary": result}


SCENARIOS = {"ingest": run_ingest, "latency": run_latency, "router": run_router, "memory": run_memory}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench, print the table, write JSON and Markdown results."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a few seconds per scenario, for tests")
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default: bench/results; tiny: none)"
    )
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios to run")
    args = parser.parse_args(argv)
    settings = TINY if args.tiny else FULL
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
