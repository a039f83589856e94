"""Ledger under SIGKILL: a request executed before a crash is never executed again after restart.

Each child (`ledger_child.py`) is a real process on the same state dir; "execution"
appends a line to a marker file, standing in for the exchange call.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from router.ledger import Ledger

pytestmark = pytest.mark.integration

CHILD = Path(__file__).with_name("ledger_child.py")
REQUEST_ID = "crash-1"


class Child:
    """One ledger_child.py process, read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, started: list[Child], state_dir: Path, marker: Path, pause_at: str) -> Child:
        """Start a child and add it to `started`, so teardown can kill it if a test fails midway."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            str(state_dir),
            REQUEST_ID,
            str(marker),
            pause_at,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        started.append(child := cls(proc))
        return child

    async def expect(self, *lines: str) -> None:
        assert self.proc.stdout is not None
        for expected in lines:
            got = (await self.proc.stdout.readline()).decode().strip()
            if got != expected:
                stderr = await self._stderr()
                pytest.fail(f"child said {got!r}, expected {expected!r}; stderr:\n{stderr}")

    async def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL

    async def exits_cleanly(self) -> None:
        code = await self.proc.wait()
        assert code == 0, await self._stderr()

    async def _stderr(self) -> str:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode(errors="replace")


@pytest.fixture
async def started() -> AsyncIterator[list[Child]]:
    children: list[Child] = []
    yield children
    for child in children:
        if child.proc.returncode is None:
            child.proc.kill()
            await child.proc.wait()


def marker_lines(marker: Path) -> list[str]:
    return marker.read_text().splitlines() if marker.exists() else []


async def test_killed_between_execution_and_complete_is_never_executed_again(
    tmp_path: Path, started: list[Child]
) -> None:
    marker = tmp_path / "exchange-calls.txt"
    async with asyncio.timeout(30):
        first = await Child.start(started, tmp_path / "state", marker, "after_execute")
        await first.expect("opened", "claim new", "executed", "paused")
        await first.sigkill()
        assert len(marker_lines(marker)) == 1

        for _ in range(2):  # restart twice: still in flight, still not executed
            restarted = await Child.start(started, tmp_path / "state", marker, "never")
            await restarted.expect("opened", "claim in_flight")
            await restarted.exits_cleanly()

    assert len(marker_lines(marker)) == 1
    with Ledger.open(tmp_path / "state") as ledger:
        assert ledger.in_flight() == [(REQUEST_ID, b'{"v":1}')]
        assert ledger.result_for(REQUEST_ID) is None


async def test_killed_before_claim_executes_exactly_once_after_restart(
    tmp_path: Path, started: list[Child]
) -> None:
    marker = tmp_path / "exchange-calls.txt"
    async with asyncio.timeout(30):
        first = await Child.start(started, tmp_path / "state", marker, "before_claim")
        await first.expect("opened", "paused")
        await first.sigkill()
        assert marker_lines(marker) == []

        restarted = await Child.start(started, tmp_path / "state", marker, "never")
        await restarted.expect("opened", "claim new", "executed", "completed")
        await restarted.exits_cleanly()

        redelivered = await Child.start(started, tmp_path / "state", marker, "never")
        await redelivered.expect("opened", "claim done")
        await redelivered.exits_cleanly()

    assert len(marker_lines(marker)) == 1
    with Ledger.open(tmp_path / "state") as ledger:
        assert ledger.in_flight() == []
        assert ledger.result_for(REQUEST_ID) == b'{"v":1,"status":"filled"}'
