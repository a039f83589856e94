"""Group commit: the ledger's order-path writes, batched into one durable transaction off the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from test_smart_router import World, order, three_books

from router.errors import LedgerError
from router.ledger import Ledger, LegIntent

NOW = 1_800_000_000_000_000_000


@pytest.fixture
def ledger(any_ledger: Ledger) -> Ledger:
    """Each test runs on SQLite and on PostgreSQL."""
    return any_ledger


class Gate:
    """Hold the writer thread inside an operation until released, so that writes queue up behind it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()

    def hold(self, conn: sqlite3.Connection) -> None:
        self.entered.set()
        assert self.open.wait(10), "the gate was never opened"

    async def close_on(self, ledger: Ledger) -> asyncio.Future[None]:
        held = asyncio.ensure_future(ledger.writer.submit("gate", self.hold))
        await asyncio.to_thread(self.entered.wait, 10)
        return held


async def queued() -> None:
    """Let every write's task run up to its await, so that each is on the writer's queue."""
    for _ in range(3):
        await asyncio.sleep(0)


def intent(request_id: str, leg: int = 0) -> LegIntent:
    coid = f"c-{request_id}-{leg}"
    return LegIntent(request_id, leg, "binance", coid, "buy", Decimal(1), None, "intent", None)


async def test_many_concurrent_claims_are_committed_in_one_transaction(ledger: Ledger) -> None:
    gate = Gate()
    held = await gate.close_on(ledger)
    claims = [asyncio.ensure_future(ledger.aclaim(f"r-{i}", "u", b"{}", now_ns=NOW + i)) for i in range(50)]
    await queued()
    commits = ledger.writer.commits
    gate.open.set()
    await held
    results = await asyncio.gather(*claims)

    assert [claim.status for claim in results] == ["new"] * 50
    assert ledger.writer.commits == commits + 2  # the gate's, then 50 claims in one fsynced transaction
    assert len(ledger.in_flight()) == 50


async def test_a_failed_transaction_fails_every_write_of_its_batch_and_applies_none(ledger: Ledger) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    gate = Gate()
    held = await gate.close_on(ledger)
    batch = [
        asyncio.ensure_future(ledger.aclaim("r-1", "u", b"{}", now_ns=NOW)),
        asyncio.ensure_future(ledger.writer.submit("broken", broken)),
        asyncio.ensure_future(ledger.aclaim("r-2", "u", b"{}", now_ns=NOW)),
    ]
    await queued()
    gate.open.set()
    outcomes = await asyncio.gather(*batch, return_exceptions=True)
    await held  # the gate's own batch committed before the broken one was taken

    assert all(isinstance(outcome, LedgerError) for outcome in outcomes), outcomes
    assert ledger.in_flight() == []
    # The writer goes on: the next batch commits.
    assert (await ledger.aclaim("r-1", "u", b"{}", now_ns=NOW)).status == "new"


async def test_a_refused_write_fails_alone_and_the_rest_of_its_batch_commits(ledger: Ledger) -> None:
    gate = Gate()
    held = await gate.close_on(ledger)
    claim = asyncio.ensure_future(ledger.aclaim("r-1", "u", b"{}", now_ns=NOW))
    refused = asyncio.ensure_future(ledger.amark_leg("r-unknown", 0, "sent"))
    await queued()
    gate.open.set()
    await held

    assert (await claim).status == "new"
    with pytest.raises(LedgerError, match="leg 0 of 'r-unknown' is not recorded"):
        await refused
    assert ledger.in_flight() == [("r-1", b"{}")]


async def test_each_requests_writes_keep_their_order_while_requests_share_batches(ledger: Ledger) -> None:
    async def lifecycle(request_id: str) -> None:
        assert (await ledger.aclaim(request_id, "u", b"{}", now_ns=NOW)).status == "new"
        await ledger.arecord_leg_intents([intent(request_id, 0), intent(request_id, 1)])
        await asyncio.gather(*(ledger.amark_leg(request_id, leg, "sent") for leg in (0, 1)))
        await asyncio.gather(*(ledger.amark_leg(request_id, leg, "settled", b"{}") for leg in (0, 1)))
        await ledger.acomplete(request_id, f"done {request_id}".encode(), now_ns=NOW)

    gate = Gate()
    held = await gate.close_on(ledger)
    requests = [asyncio.ensure_future(lifecycle(f"r-{i}")) for i in range(20)]
    await queued()
    commits, operations = ledger.writer.commits, ledger.writer.operations
    gate.open.set()
    await held
    await asyncio.gather(*requests)

    for i in range(20):
        assert ledger.result_for(f"r-{i}") == f"done r-{i}".encode()
        assert [leg.state for leg in ledger.legs(f"r-{i}")] == ["settled", "settled"]
    # The gate, then 20 requests × 7 writes: at least their 20 claims share one transaction.
    assert ledger.writer.operations - operations == 1 + 20 * 7
    assert ledger.writer.commits - commits <= 1 + 1 + 20 * 6


async def test_leg_intents_are_recorded_all_or_none(ledger: Ledger) -> None:
    await ledger.aclaim("r-1", "u", b"{}", now_ns=NOW)
    clash = LegIntent("r-1", 1, "okx", "c-r-1-0", "buy", Decimal(1), None, "intent", None)  # same order id
    with pytest.raises(LedgerError):
        await ledger.arecord_leg_intents([intent("r-1", 0), clash])
    assert ledger.legs("r-1") == []


async def test_intents_marked_sent_are_one_write_all_or_none(ledger: Ledger) -> None:
    await ledger.aclaim("r-1", "u", b"{}", now_ns=NOW)
    operations = ledger.writer.operations
    await ledger.arecord_leg_intents([intent("r-1", 0), intent("r-1", 1)], sent=True)
    assert ledger.writer.operations - operations == 1
    assert [leg.state for leg in ledger.legs("r-1")] == ["sent", "sent"]

    await ledger.aclaim("r-2", "u", b"{}", now_ns=NOW)
    clash = LegIntent("r-2", 1, "okx", "c-r-2-0", "buy", Decimal(1), None, "intent", None)  # same order id
    with pytest.raises(LedgerError):
        await ledger.arecord_leg_intents([intent("r-2", 0), clash], sent=True)
    assert ledger.legs("r-2") == []


async def test_a_duplicate_delivered_while_the_first_executes_gets_its_result_never_a_recovery(
    tmp_path: Path,
) -> None:
    world = World(tmp_path / "state")
    try:
        three_books(world)
        first, second = await asyncio.gather(world.router.handle(order()), world.router.handle(order()))
    finally:
        world.ledger.close()

    assert len(world.executor.sent) == 1 and world.executor.recovered == []
    assert first.executed and not second.executed and second.replayed
    assert first.result is not None and second.result == first.result
