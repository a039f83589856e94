"""A router process for crash tests: `python router_child.py CONFIG SENT_LOG [CRASH_AFTER_REQUEST_ID]`.

It runs the daemon's router role exactly as `smartroute route` does, with one
difference: every leg sent to the executor is appended to SENT_LOG (standing
in for the exchange's order log), and right after executing a leg of
CRASH_AFTER_REQUEST_ID the process SIGKILLs itself — after the execution,
before the ledger records its outcome and before the offset is committed.
With `acked:REQUEST_ID` instead, it SIGKILLs itself right after the broker
acknowledged the results of the batch holding REQUEST_ID, before that batch's
offset is committed. With `leg:REQUEST_ID:LEG` it SIGKILLs itself when that leg is about to
execute, once the legs before it (e.g. an arbitrage's buy leg, sent concurrently) are settled in
the ledger: the leg is recorded and sent, and the venue never got it. (Without that wait a crash
could come before the group-committed settlement of the buy leg, and a paper fill never recorded
never happened: there would be no residual to test.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

from daemon import routing
from daemon.app import Daemon
from daemon.config import load_config
from daemon.logs import configure_logging
from router.cache import PriceCache
from router.execution import Executor, LegOutcome, OrderLeg, PaperExecutor
from router.ledger import Ledger, LegIntent
from router.ledger.schema import FILE_NAME


class CrashingExecutor:
    def __init__(self, inner: Executor, sent_log: Path, crash_after: str | None, ledger_path: Path) -> None:
        self.inner = inner
        self.mode = inner.mode
        self.sent_log = sent_log
        self.crash_after = crash_after
        self.ledger_path = ledger_path

    async def _earlier_legs_settled(self, request_id: str, leg: int) -> None:
        """Wait (at most 10 s) until legs 0..leg-1 of `request_id` are settled in the ledger file."""
        for _ in range(1_000):
            with sqlite3.connect(f"file:{self.ledger_path}?mode=ro", uri=True) as conn:
                (settled,) = conn.execute(
                    "SELECT count(*) FROM legs WHERE request_id = ? AND leg < ? AND state = 'settled'",
                    (request_id, leg),
                ).fetchone()
            if settled == leg:
                return
            await asyncio.sleep(0.01)

    async def execute(self, leg: OrderLeg) -> LegOutcome:
        with self.sent_log.open("a") as log:
            log.write(f"{leg.request_id} {leg.leg} {leg.client_order_id}\n")
        if self.crash_after == f"leg:{leg.request_id}:{leg.leg}":
            await self._earlier_legs_settled(leg.request_id, leg.leg)
            os.kill(os.getpid(), signal.SIGKILL)
        outcome = await self.inner.execute(leg)
        if leg.request_id == self.crash_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return outcome

    def observed_ack_latency_ms(self, venue: str) -> float | None:
        return self.inner.observed_ack_latency_ms(venue)

    async def recover(self, leg: OrderLeg, *, acknowledged: bool = False) -> LegOutcome:
        return await self.inner.recover(leg, acknowledged=acknowledged)


def crash_after_ack(daemon: Daemon, request_id: str) -> None:
    """SIGKILL this process once the results of `request_id`'s batch are acknowledged, before the commit."""
    service = daemon.router_service
    assert service is not None
    send_all = service._send_all

    async def send_then_crash(messages: list[tuple[str, bytes | None, bytes]]) -> None:
        await send_all(messages)
        if any(key == request_id.encode() for _, key, _ in messages):
            os.kill(os.getpid(), signal.SIGKILL)

    service._send_all = send_then_crash  # type: ignore[method-assign]


def log_paper_legs(sent_log: Path, crash_after: str | None, ledger_path: Path) -> None:
    """Make the router the daemon builds execute through a CrashingExecutor over its paper executor."""

    def crashing(cache: PriceCache, fees: Mapping[str, Decimal]) -> Executor:
        return CrashingExecutor(PaperExecutor(cache, fees), sent_log, crash_after, ledger_path)

    # build_router looks PaperExecutor up when it is called, after this.
    routing.PaperExecutor = crashing  # type: ignore[attr-defined,assignment]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crash_at_step(step: str, request_id: str) -> None:
    """SIGKILL this process at `step` of `request_id`'s ledger writes (see the module docstring)."""
    aclaim, intents, mark, complete = (
        Ledger.aclaim,
        Ledger.arecord_leg_intents,
        Ledger.amark_leg,
        Ledger.acomplete,
    )

    async def claim(self: Ledger, rid: str, user_id: str, request: bytes, *, now_ns: int) -> object:
        if (step, rid) == ("before_claim", request_id):
            die()
        claimed = await aclaim(self, rid, user_id, request, now_ns=now_ns)
        if (step, rid) == ("after_claim", request_id):
            die()
        return claimed

    async def record_intents(self: Ledger, legs: list[LegIntent], *, sent: bool = False) -> None:
        await intents(self, legs, sent=sent)
        if step == "after_intent" and any(leg.request_id == request_id for leg in legs):
            die()

    async def mark_leg(self: Ledger, rid: str, leg: int, state: str, outcome: bytes | None = None) -> None:
        await mark(self, rid, leg, state, outcome)  # type: ignore[arg-type]
        if (step, rid, state) == ("after_outcome", request_id, "settled"):
            die()

    async def acomplete(self: Ledger, rid: str, result: bytes, *, now_ns: int) -> None:
        await complete(self, rid, result, now_ns=now_ns)
        if (step, rid) == ("after_result", request_id):
            die()

    Ledger.aclaim = claim  # type: ignore[assignment,method-assign]
    Ledger.arecord_leg_intents = record_intents  # type: ignore[assignment,method-assign]
    Ledger.amark_leg = mark_leg  # type: ignore[assignment,method-assign]
    Ledger.acomplete = acomplete  # type: ignore[method-assign]


async def main(config: Path, sent_log: Path, crash_after: str | None) -> None:
    # First of all, as `smartroute` does: a SIGTERM that arrives while the daemon is still being
    # built stops it cleanly (exit 0) instead of killing it.
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if crash_after is not None and crash_after.startswith("step:"):
        _, step, request_id = crash_after.split(":", 2)
        if step == "after_send":
            crash_after = request_id
        elif step == "before_commit":
            crash_after = f"acked:{request_id}"
        else:
            crash_at_step(step, request_id)
            crash_after = None
    acked = crash_after is not None and crash_after.startswith("acked:")
    cfg = load_config(config, environ={})
    log_paper_legs(sent_log, None if acked else crash_after, Path(cfg.daemon.state_dir) / FILE_NAME)
    daemon = Daemon(cfg, roles=frozenset({"feeds", "route"}))
    assert daemon.router is not None
    if crash_after is not None and acked:
        crash_after_ack(daemon, crash_after.removeprefix("acked:"))
    await daemon.run(stop)


if __name__ == "__main__":
    configure_logging("info", sys.stderr)
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None))
