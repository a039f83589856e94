"""The processes the isolation, reaction and scale-out scenarios measure: the market and the daemon.

    market = MarketProcess(period_s, hold_s)                         # bench.market in a child process
    async with market, DaemonProcess(workdir, bootstrap, market.urls) as daemon:   # `smartroute run`
        ... daemon.cfg ...
    market.records                                                  # its dislocations, once it stopped

The daemon is the product as a desk runs it (`python -m daemon.cli run --config ...`: feeds,
detector and router in one process, paper mode, SQLite ledger in its state_dir; or `route`, in
`copies` processes sharing topics and group), on topics the bench created first under a fresh
prefix. Their logs go to `workdir/daemon-N.log`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import orjson

from bench.market import ARB_SYMBOL, LOAD_SYMBOL, VENUES
from bench.transport import create_bench_topics
from daemon.config import Config, load_config
from daemon.kafka import new_consumer

_START_TIMEOUT_S: Final = 60.0
_STOP_TIMEOUT_S: Final = 30.0
_READ_IDLE_MS: Final = 1000
_LINE_LIMIT: Final = 1 << 28  # the market's last line lists every dislocation it made


class MarketProcess:
    """`python -m bench.worker market` as a child: its URLs once started, its dislocations once stopped."""

    def __init__(self, period_s: float, hold_s: float) -> None:
        self.period_s = period_s
        self.hold_s = hold_s
        self.urls: dict[str, str] = {}
        self.records: list[dict[str, Any]] = []
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.worker", "market", "--period-s", str(self.period_s),
            "--hold-s", str(self.hold_s), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )  # fmt: skip
        assert self._proc.stdout is not None
        async with asyncio.timeout(_START_TIMEOUT_S):
            line = await self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the market process exited ({await self._proc.wait()}) before serving")
        self.urls = orjson.loads(line)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        async with asyncio.timeout(_STOP_TIMEOUT_S):
            line = await proc.stdout.readline()
            await proc.wait()
        if line:
            self.records = orjson.loads(line)


def daemon_toml(
    bootstrap: str, urls: dict[str, str], state_dir: Path, tag: str, ledger_url: str | None = None
) -> str:
    """Return the TOML of a paper daemon on the scripted market, with the bench topics and group of `tag`.

    With `ledger_url` the ledger is that PostgreSQL database (shared by the copies), else SQLite.
    """
    symbols = orjson.dumps([LOAD_SYMBOL, ARB_SYMBOL]).decode()
    lines = [
        "[daemon]", "http_port = 0", f'state_dir = "{state_dir}"', 'log_level = "warning"',
        "[kafka]", f'bootstrap_servers = "{bootstrap}"', f'topic_prefix = "bench{tag}."',
        "[detector]", "max_notional = 2000",
        "[risk]", "max_orders_per_second = 1000000", "max_gross_exposure = 1000000000",
        "[router]", "session_timeout_ms = 2000", f'group_id = "bench-router-{tag}"',
    ]  # fmt: skip
    if ledger_url is not None:
        lines.append(f'ledger_url = "{ledger_url}"')
    for venue in VENUES:
        lines += [f"[venues.{venue}]", f"symbols = {symbols}", f'ws_url = "{urls[venue]}"']
    return "\n".join(lines) + "\n"


class DaemonProcess:
    """`smartroute <command>` in `copies` child processes on the scripted market; `cfg` is their config.

    Copies share topics and consumer group; each has its own state_dir, and its own SQLite ledger
    there unless `ledger_url` gives them one PostgreSQL ledger.
    """

    def __init__(
        self,
        workdir: Path,
        bootstrap: str,
        urls: dict[str, str],
        *,
        command: str = "run",
        copies: int = 1,
        ledger_url: str | None = None,
    ) -> None:
        tag = uuid.uuid4().hex[:8]
        self.command = command
        self.paths = [workdir / f"smartroute-{n}.toml" for n in range(copies)]
        for n, path in enumerate(self.paths):
            path.write_text(daemon_toml(bootstrap, urls, workdir / f"state-{n}", tag, ledger_url))
        self.cfg: Config = load_config(self.paths[0], environ={})
        self.log_paths = [workdir / f"daemon-{n}.log" for n in range(copies)]
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Self:
        await create_bench_topics(self.cfg)
        for path, log_path in zip(self.paths, self.log_paths, strict=True):
            with log_path.open("ab") as log:
                self.procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "daemon.cli", self.command, "--config", str(path),
                        stdout=log, stderr=log,
                    )
                )  # fmt: skip
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        running = [proc for proc in self.procs if proc.returncode is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                async with asyncio.timeout(_STOP_TIMEOUT_S):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()

    def check_running(self) -> None:
        """Raise if a daemon exited, with the end of its log."""
        for proc, log_path in zip(self.procs, self.log_paths, strict=True):
            if proc.returncode is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"smartroute {self.command} exited with {proc.returncode}:\n{tail}")


async def read_topic(cfg: Config, topic: str) -> list[bytes]:
    """Read every message of `topic` from its beginning (until two seconds pass with nothing new)."""
    consumer = new_consumer(cfg.kafka, topic, fetch_max_wait_ms=100)
    values: list[bytes] = []
    await consumer.start()
    try:
        idle = 0
        while idle < 2:
            batches = await consumer.getmany(timeout_ms=_READ_IDLE_MS)
            fresh = [record.value or b"" for records in batches.values() for record in records]
            values += fresh
            idle = 0 if fresh else idle + 1
    finally:
        await consumer.stop()
    return values
