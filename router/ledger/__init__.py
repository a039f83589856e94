"""The durable execution ledger: each request_id executes at most once, ever.

One SQLite file (`state_dir/ledger.sqlite3`) in WAL mode with synchronous=FULL
for one router process, or one PostgreSQL database (`[router] ledger_url`)
shared by any number of routers in one consumer group: each claim then has an
owner and a lease (`leases.py`), and a router acts only on the claims it holds.
The router claims a request before executing it and completes it with the
result message after:

    unknown ──claim──► executing ──complete──► done (result stored)

A second claim of an `executing` request answers "in_flight" — never "new" —
so a crash between execution and completion cannot cause a second execution;
`in_flight()` lists what a restart must settle. Order legs are recorded as
intents (with their deterministic client order id) before the venue call and
move `intent → sent → settled`. Small durable flags (the kill switch) live here
too. A request the background settler answers later has its result recorded as
owed (`owed.py`) before its offset may be committed.

**Group commit.** The writes of the order path — `aclaim`, `arecord_leg_intents`,
`amark_leg`, `arecord_acknowledged`, `acomplete`, `aowe`, `aanswered` — go
through the group writer (`writer.py`): one thread with its own connection
takes every write queued by the requests in flight, runs them in ONE
transaction, commits it (one fsync), and only then resolves each caller's
future; if the transaction fails, every caller of the batch gets LedgerError
and nothing of the batch is applied. No disk I/O of the order path runs on the
event-loop thread. The exactly-once argument holds for the new scheme because
each caller awaits its own write's durability before its next step:

- claim before execute: a request is executed only after its "new" claim is on
  disk, so any later delivery (this process, or after a crash) finds it;
- intent before send: a leg reaches a venue only after its intent and "sent"
  mark are on disk (the order path writes both in one operation), so a restart
  settles it from the venue, never sends again;
- outcome before result: the result is published only after the legs'
  outcomes and the result itself (or the owed row) are on disk;
- offsets after acknowledged results: the service commits an offset only after
  the results before it were acknowledged by the broker.

A batch groups writes of different requests; one request's writes follow each
other in order because each waits for the previous one. Two deliveries of one
request_id in flight together are answered one after the other by the router
(`router.smart`), so the second finds the first's result, never an open claim
it would take for a crash's.

Off the order path the synchronous methods (`claim`, `complete`, `set_flag`,
…) still write on the calling thread, each its own transaction: the kill
switch, signed settings and loss-guard flags (one per control message), the
residual records (only when an arbitrage's legs filled unequally), the open-order
check's reads, and startup (open, migrate, restore positions, resume the
settler, list in-flight requests), which runs before serving. Retention
(`router.retention`) prunes old answered requests on a second connection, in a
worker thread, in short chunks; their fills are carried forward in one record
(`retention.py`). SQLite's busy timeout orders these writers with the group
writer.

The package has one module per kind of record, over its connections:

    schema.py    the file's identity and its migrations
    file.py      LedgerFile: open, migrate, transactions, flags, stats, close
    writer.py    GroupWriter: the order path's writes, one durable transaction per batch
    requests.py  RequestRecords: claim, complete, in_flight
    legs.py      LegRecords: leg intents, their states, venue acknowledgements
    residuals.py ResidualRecords: an arbitrage's unhedged quantity, tracked until flat
    owed.py      OwedRecords: results the background settler still owes (router.settler)
    retention.py RetentionRecords: prune old answered requests, their fills carried forward
    leases.py    LeaseRecords: renew this router's leases, take over expired ones
    store.py     Store (SQLite), Lease, Connection: what differs between databases
    postgres.py  PostgresStore: the shared ledger and its schema
"""

from __future__ import annotations

from router.ledger.leases import LeaseRecords
from router.ledger.legs import LegIntent, LegRecords, LegState
from router.ledger.owed import OwedRecords, OwedResult
from router.ledger.requests import Claim, ClaimStatus, RequestRecords
from router.ledger.residuals import ResidualRecord, ResidualRecords, ResidualState
from router.ledger.retention import CARRIED_FLAG, Fold, RetentionRecords
from router.ledger.schema import APPLICATION_ID as _APPLICATION_ID
from router.ledger.schema import FILE_NAME
from router.ledger.schema import MIGRATIONS as _MIGRATIONS
from router.ledger.store import Lease, SqliteStore, Store

__all__ = [
    "CARRIED_FLAG",
    "FILE_NAME",
    "_APPLICATION_ID",
    "_MIGRATIONS",
    "Claim",
    "ClaimStatus",
    "Fold",
    "Lease",
    "Ledger",
    "LegIntent",
    "LegState",
    "OwedResult",
    "ResidualRecord",
    "ResidualState",
    "SqliteStore",
    "Store",
]


class Ledger(RequestRecords, LegRecords, ResidualRecords, OwedRecords, RetentionRecords, LeaseRecords):
    """Record each request before and after execution so it never executes twice."""
