"""The shared ledger on PostgreSQL: one winner per claim, leases, takeovers, and refusals after them.

Two `Ledger` objects with different owners on one database stand for two routers. Leases are
short (a few hundred ms) so that expiry happens within the test; what expires is measured by
the database's clock, as in production.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import psycopg
import pytest
from prerequisites import NO_POSTGRES, unavailable

from daemon.postgres_server import LocalPostgres, server_bindir
from router.errors import LeaseLost, LedgerError
from router.leases import LeaseKeeper
from router.ledger import Lease, Ledger, LegIntent, ResidualRecord
from router.ledger.file import owns
from router.ledger.postgres import PostgresStore, redact_url
from router.risk import RiskGate, RiskLimits
from router.settler import Settler

REQUEST = b'{"v":1,"request_id":"r-1","user_id":"alice","kind":"order"}'
RESULT = b'{"v":1,"request_id":"r-1","status":"filled"}'


@pytest.fixture
def routers(postgres_url: str) -> Iterator[tuple[Ledger, Ledger]]:
    """Two routers' ledgers on one database, with 400 ms leases."""
    with (
        Ledger(PostgresStore(postgres_url), Lease("router-a", 400)) as a,
        Ledger(PostgresStore(postgres_url), Lease("router-b", 400)) as b,
    ):
        yield a, b


def leg(request_id: str, number: int = 0) -> LegIntent:
    return LegIntent(
        request_id,
        number,
        "binance",
        f"sr-{request_id}-{number}",
        "buy",
        Decimal("0.5"),
        None,
        "intent",
        None,
    )


def expire(ledger: Ledger) -> None:
    """Wait until every lease `ledger`'s owner took has expired (it renews none meanwhile)."""
    assert ledger.lease.ttl_ms is not None
    time.sleep(ledger.lease.ttl_ms / 1000 + 0.1)


async def test_of_two_routers_claiming_the_same_requests_at_once_exactly_one_wins_each(
    routers: tuple[Ledger, Ledger],
) -> None:
    a, b = routers
    ids = [f"r-{n}" for n in range(60)]
    claims = await asyncio.gather(
        *(router.aclaim(rid, "alice", REQUEST, now_ns=1) for rid in ids for router in (a, b))
    )
    by_request: dict[str, Counter[str]] = {}
    for claim in claims:
        by_request.setdefault(claim.request_id, Counter())[claim.status] += 1
    assert all(statuses == Counter({"new": 1, "held": 1}) for statuses in by_request.values()), by_request


def test_a_live_claim_is_held_elsewhere_and_an_expired_one_is_taken_over(
    routers: tuple[Ledger, Ledger],
) -> None:
    a, b = routers
    assert a.claim("r-1", "alice", REQUEST, now_ns=1).status == "new"
    assert b.claim("r-1", "alice", REQUEST, now_ns=2).status == "held"

    expire(a)
    assert b.claim("r-1", "alice", REQUEST, now_ns=3).status == "in_flight"  # b settles it now
    assert a.claim("r-1", "alice", REQUEST, now_ns=4).status == "held"
    assert b.in_flight() == [("r-1", REQUEST)]
    assert a.in_flight() == []


async def test_a_router_that_lost_its_claim_can_neither_send_settle_owe_nor_complete(
    routers: tuple[Ledger, Ledger],
) -> None:
    a, b = routers
    a.claim("r-1", "alice", REQUEST, now_ns=1)
    await a.arecord_leg_intents([leg("r-1")])
    expire(a)
    assert b.claim("r-1", "alice", REQUEST, now_ns=2).status == "in_flight"

    with pytest.raises(LeaseLost, match="held by 'router-b'"):
        await a.amark_leg("r-1", 0, "sent")
    with pytest.raises(LeaseLost):
        await a.aowe("r-1", since_ns=3, error="venue dark")
    with pytest.raises(LeaseLost):
        await a.acomplete("r-1", RESULT, now_ns=3)
    assert a.legs("r-1")[0].state == "intent"

    await b.amark_leg("r-1", 0, "settled", b'{"never_placed":true}')
    await b.acomplete("r-1", RESULT, now_ns=4)
    assert a.claim("r-1", "alice", REQUEST, now_ns=5).result == RESULT
    # What b recorded since is b's: a hears that it lost the request, never "a different result"
    # or "already settled" (which would stop a router as a broken ledger).
    with pytest.raises(LeaseLost):
        await a.acomplete("r-1", b'{"status":"filled"}', now_ns=6)
    with pytest.raises(LeaseLost):
        await a.amark_leg("r-1", 0, "settled", b'{"filled":"0.5"}')
    with pytest.raises(LeaseLost):
        await a.arecord_leg_intents([leg("r-1", 1)])


async def test_renewed_leases_stay_held_and_sending_a_leg_renews_its_lease(
    routers: tuple[Ledger, Ledger],
) -> None:
    a, b = routers
    a.claim("r-1", "alice", REQUEST, now_ns=1)
    await a.arecord_leg_intents([leg("r-1"), leg("r-1", 1)])
    for _ in range(6):  # 600 ms: longer than a lease, renewed every 100 ms
        assert await a.arenew_leases() == 1
        await asyncio.sleep(0.1)
    assert b.claim("r-1", "alice", REQUEST, now_ns=2).status == "held"

    expire(a)  # expired, but nobody took it over yet: it is still a's, and sending renews it
    await a.amark_leg("r-1", 0, "sent")
    assert b.claim("r-1", "alice", REQUEST, now_ns=3).status == "held"
    assert await b.atake_over_expired(lambda _: False) == []

    expire(a)
    assert b.claim("r-1", "alice", REQUEST, now_ns=4).status == "in_flight"
    with pytest.raises(LeaseLost):  # taken over: a's next send is refused, so it sends nothing more
        await a.amark_leg("r-1", 1, "sent")
    assert [leg.state for leg in b.legs("r-1")] == ["sent", "intent"]


async def test_expired_requests_are_taken_over_with_their_results_owed_and_residuals_moved(
    routers: tuple[Ledger, Ledger],
) -> None:
    a, b = routers
    a.claim("in-flight", "alice", REQUEST, now_ns=1)
    a.claim("owed", "alice", REQUEST, now_ns=2)
    await a.acomplete("owed", RESULT, now_ns=3)
    await a.aowe("owed", since_ns=3, error="result not published")
    a.claim("residual", "alice", REQUEST, now_ns=4)
    residual = ResidualRecord(
        "residual", "binance", "BTC-USDT", "sell", Decimal(1), Decimal(1), 4, 0, "open", 4
    )
    a.record_residual(residual)
    await a.acomplete("residual", RESULT, now_ns=5)
    a.claim("answered", "alice", REQUEST, now_ns=6)
    await a.acomplete("answered", RESULT, now_ns=7)
    a.claim("busy", "alice", REQUEST, now_ns=8)
    assert [r.request_id for r in a.open_residuals()] == ["residual"]

    assert await b.atake_over_expired(lambda _: False) == []  # nothing expired yet
    expire(a)
    taken = await b.atake_over_expired(lambda request_id: request_id == "busy")

    assert {(t.request_id, t.result) for t in taken} == {("in-flight", None), ("owed", RESULT)}
    assert all("taken over from 'router-a'" in t.error for t in taken)
    assert {o.request_id for o in b.owed()} == {"in-flight", "owed"}
    assert b.in_flight() == [("in-flight", REQUEST)]
    assert [r.request_id for r in b.open_residuals()] == ["residual"]
    assert a.open_residuals() == [] and a.owed() == []
    assert await a.arenew_leases() == 1  # only "busy" is still a's
    assert await b.atake_over_expired(lambda _: False) == []


def test_several_routers_opening_a_new_database_at_once_create_the_schema_once(postgres_url: str) -> None:
    errors: list[BaseException] = []
    opened: list[Ledger] = []

    def open_one(owner: str) -> None:
        try:
            opened.append(Ledger(PostgresStore(postgres_url), Lease(owner, 1000)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(f"r{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert len(opened) == 4
        opened[0].claim("r-1", "alice", REQUEST, now_ns=1)
        assert opened[3].claim("r-1", "alice", REQUEST, now_ns=1).status == "held"
    finally:
        for ledger in opened:
            ledger.close()


def test_a_shared_ledger_needs_an_expiring_lease_and_a_database_that_is_a_ledger(postgres_url: str) -> None:
    with pytest.raises(LedgerError, match="needs an expiring lease"):
        Ledger(PostgresStore(postgres_url))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE requests (id INTEGER)")
    with pytest.raises(LedgerError, match="not a smartroute ledger"):
        Ledger(PostgresStore(postgres_url), Lease("r", 1000))


def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    url = "postgresql://smartroute:s3cret@127.0.0.1:1/ledger"
    with pytest.raises(LedgerError, match="cannot connect") as caught:
        Ledger(PostgresStore(url + "?connect_timeout=2"), Lease("r", 1000))
    assert "s3cret" not in str(caught.value)
    assert redact_url(url) == "postgresql://smartroute@127.0.0.1:1/ledger"


def outcome(request_id: str, quantity: str) -> bytes:
    fill = {
        "venue": "binance",
        "side": "buy",
        "price": "64000",
        "quantity": quantity,
        "fee": "0",
        "fee_asset": "USDT",
        "client_order_id": f"sr-{request_id}-0",
        "venue_order_id": "1",
        "ts_ns": 1,
    }
    return orjson.dumps({"fills": [fill]})


async def settle(ledger: Ledger, request_id: str, quantity: str) -> None:
    ledger.claim(
        request_id, "alice", orjson.dumps({"request_id": request_id, "symbol": "BTC-USDT"}), now_ns=1
    )
    await ledger.arecord_leg_intents([leg(request_id)])
    await ledger.amark_leg(request_id, 0, "sent")
    await ledger.amark_leg(request_id, 0, "settled", outcome(request_id, quantity))


async def test_each_router_reads_every_fill_the_others_settled_once_and_never_its_own(
    routers: tuple[Ledger, Ledger],
) -> None:
    a, b = routers
    await settle(b, "before", "1")
    _, history = a.history()  # a starts: everything settled so far is in its history
    assert [leg.request_id for _, leg in history] == ["before"]

    await settle(b, "b-1", "0.5")
    await settle(a, "a-1", "0.25")
    await settle(b, "b-2", "0.125")
    seen = await a.afills_elsewhere()
    assert [leg.request_id for _, leg in seen] == ["b-1", "b-2"]
    assert orjson.loads(seen[0][0])["symbol"] == "BTC-USDT"
    assert await a.afills_elsewhere() == []  # each once

    await settle(b, "b-3", "2")
    assert [leg.request_id for _, leg in await a.afills_elsewhere()] == ["b-3"]
    assert await b.afills_elsewhere() == []  # b never read its history: it starts counting there
    b.history()
    assert await b.afills_elsewhere() == []
    await settle(a, "a-2", "1")
    assert [leg.request_id for _, leg in await b.afills_elsewhere()] == ["a-2"]


async def test_a_leg_settled_while_a_reader_reads_is_counted_by_the_next_read_exactly_once(
    routers: tuple[Ledger, Ledger], postgres_url: str
) -> None:
    a, b = routers
    a.history()
    b.claim("slow", "alice", orjson.dumps({"request_id": "slow", "symbol": "BTC-USDT"}), now_ns=1)
    await b.arecord_leg_intents([leg("slow")])
    await b.amark_leg("slow", 0, "sent")
    # Another connection settles the leg in a transaction that stays open across a's read.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute(
            "UPDATE legs SET state = 'settled', outcome = %s, settled_by = 'router-b'"
            " WHERE request_id = 'slow'",
            (outcome("slow", "1"),),
        )
        assert await a.afills_elsewhere() == []  # not committed: not seen
        conn.execute("COMMIT")
    assert [leg.request_id for _, leg in await a.afills_elsewhere()] == ["slow"]
    assert await a.afills_elsewhere() == []


async def test_routers_say_they_are_alive_and_are_counted_while_they_do(
    routers: tuple[Ledger, Ledger], tmp_path: Path
) -> None:
    a, b = routers
    assert await a.arouters_alive() == 1
    assert await b.arouters_alive() == 2
    expire(a)  # a stopped saying so
    assert await b.arouters_alive() == 1
    with Ledger.open(tmp_path) as alone:
        assert await alone.arouters_alive() == 1  # SQLite: one process


class OthersFills:
    """Stands for the LegRunner: counts how often the keeper asked for the others' fills."""

    def __init__(self) -> None:
        self.calls = 0

    async def count_others_fills(self) -> int:
        self.calls += 1
        return 0


async def test_the_lease_keeper_renews_takes_over_what_expired_and_shares_the_order_rate(
    routers: tuple[Ledger, Ledger],
) -> None:
    a, b = routers
    settler = Settler(b, lambda request_id, raw: asyncio.sleep(0, RESULT))
    risk = RiskGate(RiskLimits(Decimal(10_000), 10, Decimal(50_000)))
    fills = OthersFills()
    keeper = LeaseKeeper(b, settler, lambda request_id: request_id == "busy", fills, risk)  # type: ignore[arg-type]
    assert keeper.interval_s == pytest.approx(0.4 / 3)
    a.claim("gone", "alice", REQUEST, now_ns=1)
    a.claim("busy", "alice", REQUEST, now_ns=2)
    await a.arouters_alive()
    b.claim("mine", "alice", REQUEST, now_ns=3)

    assert await keeper.step() == 0  # nothing expired
    assert risk.routers == 2 and fills.calls == 1
    expire(a)
    assert await keeper.step() == 1  # "gone"; "busy" is being answered here now; "mine" was renewed
    assert [u.request_id for u in settler.unsettled()] == ["gone"]
    assert risk.routers == 1 and fills.calls == 2
    assert b.claim("mine", "alice", REQUEST, now_ns=4).status == "in_flight"


async def test_a_restarted_database_fails_the_calls_it_interrupted_and_the_next_ones_reconnect(
    tmp_path: Path,
) -> None:
    if server_bindir() is None:
        unavailable(NO_POSTGRES)
    with LocalPostgres(log_dir=tmp_path) as server:  # its own: restarted under the ledger
        url = server.create_database("ledger")
        with Ledger(PostgresStore(url), Lease("router-a", 60_000)) as ledger:
            ledger.claim("r-1", "alice", REQUEST, now_ns=1)
            server.restart()
            with pytest.raises(LedgerError):  # the synchronous connection died with the server
                ledger.claim("r-2", "alice", REQUEST, now_ns=2)
            assert ledger.claim("r-2", "alice", REQUEST, now_ns=2).status == "new"
            with pytest.raises(LedgerError, match="not committed"):  # so did the group writer's
                await ledger.aclaim("r-3", "alice", REQUEST, now_ns=3)
            assert (await ledger.aclaim("r-3", "alice", REQUEST, now_ns=3)).status == "new"
            assert ledger.claim("r-1", "alice", REQUEST, now_ns=4).status == "in_flight"


async def test_a_takeover_waits_for_the_holders_write_in_progress_and_never_takes_what_it_completed(
    routers: tuple[Ledger, Ledger], postgres_url: str
) -> None:
    a, b = routers
    a.claim("r-1", "alice", REQUEST, now_ns=1)
    expire(a)  # a is slow, not gone: it is completing the request right now
    conn = PostgresStore(postgres_url).connect()
    try:
        conn.execute("BEGIN")
        assert owns(conn, a.lease, "r-1", "complete")  # a's check holds the row until a commits
        taking = asyncio.ensure_future(b.atake_over_expired(lambda _: False))
        claiming = asyncio.ensure_future(b.aclaim("r-1", "alice", REQUEST, now_ns=2))
        await asyncio.sleep(0.5)
        assert not taking.done() and not claiming.done()  # both wait for a's transaction
        conn.execute(
            "UPDATE requests SET state = 'done', result = ?, completed_ns = 3 WHERE request_id = ?",
            (RESULT, "r-1"),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert await taking == []  # answered: nothing to take over
    claim = await claiming
    assert (claim.status, claim.result) == ("done", RESULT)  # not "in_flight": never recovered twice
