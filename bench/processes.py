"""The processes the isolation and reaction scenarios measure: the scripted market and `smartroute run`.

    async with MarketProcess(period_s, hold_s) as market:          # bench.market in a child process
        async with DaemonProcess(workdir, bootstrap, market.urls) as daemon:   # `smartroute run`
            ... daemon.cfg ...
    market.records                                                  # its dislocations, once it stopped

The daemon is the product as a desk runs it (`python -m daemon.cli run --config ...`: feeds,
detector and router in one process, paper mode, SQLite ledger in its state_dir), on topics the
bench created first under a fresh prefix. Its log goes to `workdir/daemon.log`.
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


def daemon_toml(bootstrap: str, urls: dict[str, str], state_dir: Path) -> str:
    """Return the TOML of a paper `smartroute run` on the scripted market, with bench topics and group."""
    tag = uuid.uuid4().hex[:8]
    symbols = orjson.dumps([LOAD_SYMBOL, ARB_SYMBOL]).decode()
    lines = [
        "[daemon]", "http_port = 0", f'state_dir = "{state_dir}"', 'log_level = "warning"',
        "[kafka]", f'bootstrap_servers = "{bootstrap}"', f'topic_prefix = "bench{tag}."',
        "[detector]", "max_notional = 2000",
        "[risk]", "max_orders_per_second = 1000000", "max_gross_exposure = 1000000000",
        "[router]", "session_timeout_ms = 2000", f'group_id = "bench-router-{tag}"',
    ]  # fmt: skip
    for venue in VENUES:
        lines += [f"[venues.{venue}]", f"symbols = {symbols}", f'ws_url = "{urls[venue]}"']
    return "\n".join(lines) + "\n"


class DaemonProcess:
    """`smartroute run` in a child process on the scripted market; `cfg` is its config."""

    def __init__(self, workdir: Path, bootstrap: str, urls: dict[str, str]) -> None:
        self.path = workdir / "smartroute.toml"
        self.path.write_text(daemon_toml(bootstrap, urls, workdir / "state"))
        self.cfg: Config = load_config(self.path, environ={})
        self.log_path = workdir / "daemon.log"
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        await create_bench_topics(self.cfg)
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "daemon.cli", "run", "--config", str(self.path), stdout=log, stderr=log
            )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(_STOP_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def check_running(self) -> None:
        """Raise if the daemon exited, with the end of its log."""
        if self._proc is not None and self._proc.returncode is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"smartroute run exited with {self._proc.returncode}:\n{tail}")


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
