"""The bench harness's parts: how much each scenario does, worker processes, brokers.

Every measured run is a fresh worker process (`python -m bench.worker ...`)
whose JSON result the harness reads back. Scenarios on Kafka get their broker
from `started_broker`: Tansu (`daemon.broker.EmbeddedBroker`) or Apache Kafka
(`daemon.apache_kafka.ApacheKafka`, one KRaft node), started once here and
shared by that scenario's workers (each run uses its own topics and group).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from daemon.apache_kafka import ApacheKafka
from daemon.broker import EmbeddedBroker

REPO: Final = Path(__file__).resolve().parents[1]
BROKERS: Final = ("tansu", "apache")
_LOG_TAIL_CHARS: Final = 4000


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
    brokers: tuple[str, ...]
    isolation_phase_s: float
    isolation_rounds: int
    reaction_duration_s: float
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
    router_requests=3000,
    router_window=64,
    router_warmup=200,
    router_runs=5,
    brokers=BROKERS,
    isolation_phase_s=20.0,
    isolation_rounds=3,
    reaction_duration_s=60.0,
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
    router_requests=40,
    router_window=8,
    router_warmup=8,
    router_runs=1,
    brokers=BROKERS,
    isolation_phase_s=2.0,
    isolation_rounds=1,
    reaction_duration_s=3.0,
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
            # Its own session, killed at the end: nothing it started outlives it (market, daemons).
            proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=out, start_new_session=True)
            try:
                code: int | None = proc.wait(timeout=self.settings.timeout_s)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                _kill_session(proc)
        if code != 0 or not result.exists():
            tail = log.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
            what = "timed out" if code is None else f"exited with {code}"
            raise BenchError(f"bench worker {scenario} {' '.join(args)} {what}:\n{tail}")
        value: dict[str, Any] = orjson.loads(result.read_bytes())
        return value


def _kill_session(proc: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left of a worker's session (after a timeout, an interrupt or a stray child)."""
    with contextlib.suppress(ProcessLookupError):  # the usual case: the worker and its children are gone
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def started_broker(kind: str, workdir: Path) -> Iterator[str]:
    """Start a broker of `kind` (tansu or apache) for the block; yield its bootstrap servers."""
    workdir.mkdir(parents=True, exist_ok=True)
    broker: EmbeddedBroker | ApacheKafka
    if kind == "tansu":
        broker = EmbeddedBroker(log_path=workdir / "tansu.log")
    elif kind == "apache":
        broker = ApacheKafka(log_dir=workdir / "apache")
    else:
        raise BenchError(f"unknown broker {kind!r}; known: {', '.join(BROKERS)}")
    with broker:
        yield broker.bootstrap_servers


def progress(text: str) -> None:
    """Say on stderr what the bench is doing now."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
