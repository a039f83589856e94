"""The durable execution ledger: each request_id executes at most once, ever.

One SQLite file (`state_dir/ledger.sqlite3`) in WAL mode with synchronous=FULL,
so every write is on disk before the method returns. The router claims a
request before executing it and completes it with the result message after:

    unknown ──claim──► executing ──complete──► done (result stored)

A second claim of an `executing` request answers "in_flight" — never "new" —
so a crash between execution and completion cannot cause a second execution;
`in_flight()` lists what a restart must settle. Order legs are recorded as
intents (with their deterministic client order id) before the venue call and
move `intent → sent → settled`. Small durable flags (the kill switch) live here
too. Used from one event-loop thread; every call is a short local transaction.
A request the background settler answers later has its result recorded as owed
(`owed.py`) before its offset may be committed. Retention (`router.retention`)
prunes old answered requests on a second connection, in a worker thread, in
short chunks; their fills are carried forward in one record (`retention.py`).

The package has one module per kind of record, over one connection:

    schema.py    the file's identity and its migrations
    file.py      LedgerFile: open, migrate, transactions, flags, stats, close
    requests.py  RequestRecords: claim, complete, in_flight
    legs.py      LegRecords: leg intents, their states, venue acknowledgements
    residuals.py ResidualRecords: an arbitrage's unhedged quantity, tracked until flat
    owed.py      OwedRecords: results the background settler still owes (router.settler)
    retention.py RetentionRecords: prune old answered requests, their fills carried forward
"""

from __future__ import annotations

from router.ledger.legs import LegIntent, LegRecords, LegState
from router.ledger.owed import OwedRecords, OwedResult
from router.ledger.requests import Claim, ClaimStatus, RequestRecords
from router.ledger.residuals import ResidualRecord, ResidualRecords, ResidualState
from router.ledger.retention import CARRIED_FLAG, Fold, RetentionRecords
from router.ledger.schema import APPLICATION_ID as _APPLICATION_ID
from router.ledger.schema import FILE_NAME
from router.ledger.schema import MIGRATIONS as _MIGRATIONS

__all__ = [
    "CARRIED_FLAG",
    "FILE_NAME",
    "_APPLICATION_ID",
    "_MIGRATIONS",
    "Claim",
    "ClaimStatus",
    "Fold",
    "Ledger",
    "LegIntent",
    "LegState",
    "OwedResult",
    "ResidualRecord",
    "ResidualState",
]


class Ledger(RequestRecords, LegRecords, ResidualRecords, OwedRecords, RetentionRecords):
    """Record each request before and after execution so it never executes twice."""
