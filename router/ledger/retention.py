"""Retention: old answered requests leave the ledger, their fills carried forward in one record.

Positions, paper balances and realized PnL are rebuilt at start from the fills
of the ledger's settled legs, replayed in claim order (`claimed_ns`, then
request_id). Deleting old requests must not change what that rebuild gives, so
a pruned request's fills are folded into the carried history (the flag
`CARRIED_FLAG`, encoded by `router.carry`) in the same transaction that
deletes it, and the rebuild starts from that record.

Only a prefix of the claim order is pruned: walking the requests oldest claim
first, pruning stops at the first one that must be kept — not answered (in
flight), answered after the bound, with a leg not settled, an open residual,
or a result still owed (`router.ledger.owed`). So the carried history plus the
remaining fills replay in exactly the original order, and the average-cost PnL
comes out the same. Each call prunes at most `limit` requests, one short
transaction: the caller bounds how long the write lock is held.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from router.ledger.file import LedgerFile, log
from router.ledger.legs import LEG_COLUMNS, LegIntent, leg_from_row
from router.ledger.store import Connection

CARRIED_FLAG: Final = "carried_history"

# fold(carried history or None, the pruned requests' settled legs in replay order) → the new history
Fold = Callable[[bytes | None, Sequence[tuple[bytes, LegIntent]]], bytes]

_PRUNABLE = (
    "SELECT request_id, state = 'done' AND completed_ns < ?"
    " AND NOT EXISTS (SELECT 1 FROM legs WHERE legs.request_id = requests.request_id"
    " AND legs.state <> 'settled')"
    " AND NOT EXISTS (SELECT 1 FROM residuals WHERE residuals.request_id = requests.request_id"
    " AND residuals.state = 'open')"
    " AND NOT EXISTS (SELECT 1 FROM owed_results WHERE owed_results.request_id = requests.request_id)"
    " FROM requests ORDER BY claimed_ns, request_id LIMIT ?"
)
_COLUMNS = ", ".join(f"legs.{name}" for name in LEG_COLUMNS.split(", "))
_SETTLED = (
    f"SELECT requests.request, {_COLUMNS} FROM legs JOIN requests USING (request_id)"
    " WHERE legs.state = 'settled' {where} ORDER BY requests.claimed_ns, legs.request_id, legs.leg"
)


class RetentionRecords(LedgerFile):
    """Prune the oldest answered requests, folding their fills into the carried history."""

    def prune_done(self, older_than_ns: int, fold: Fold, *, limit: int = 500) -> int:
        """Delete up to `limit` of the oldest requests answered before `older_than_ns`; return how many.

        Their settled legs go through `fold` into the carried history, in the same transaction.
        A pruned request_id is forgotten: choose the bound beyond the time a request can still be
        redelivered (the orders topic's retention, `daemon.config` checks it).
        """
        if limit < 1:
            raise self._fail("prune_done", f"limit must be >= 1, got {limit}")
        with self._write("prune_done") as conn:
            self.store.lock(conn, CARRIED_FLAG)  # routers sharing a ledger prune one at a time
            rows = conn.execute(_PRUNABLE, (older_than_ns, limit)).fetchall()
            pruned: list[str] = []
            for request_id, prunable in rows:
                if not prunable:
                    break
                pruned.append(str(request_id))
            if not pruned:
                return 0
            marks = ", ".join("?" * len(pruned))
            legs = conn.execute(_SETTLED.format(where=f"AND legs.request_id IN ({marks})"), pruned).fetchall()
            found = conn.execute("SELECT value FROM flags WHERE name = ?", (CARRIED_FLAG,)).fetchone()
            carried = fold(None if found is None else bytes(found[0]), _settled(legs))
            conn.execute(
                "INSERT INTO flags (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (CARRIED_FLAG, carried),
            )
            conn.execute(f"DELETE FROM requests WHERE request_id IN ({marks})", pruned)
        log.info("ledger_pruned", ledger=self.where, deleted=len(pruned), older_than_ns=older_than_ns)
        return len(pruned)

    def history(self) -> tuple[bytes | None, list[tuple[bytes, LegIntent]]]:
        """Return the carried history and every settled leg with its request, in replay order.

        Both are read in one transaction, so a prune running meanwhile (another connection) is seen
        wholly or not at all: no fill is counted twice or missed. On a shared ledger the read's
        snapshot is kept: `afills_elsewhere` goes on from it.
        """
        with self._snapshot("history") as conn:
            self.fills_seen = self.store.snapshot(conn)
            found = conn.execute("SELECT value FROM flags WHERE name = ?", (CARRIED_FLAG,)).fetchone()
            legs = conn.execute(_SETTLED.format(where="")).fetchall()
        return (None if found is None else bytes(found[0])), _settled(legs)

    async def afills_elsewhere(self) -> list[tuple[bytes, LegIntent]]:
        """Return the legs other routers settled since the last call (or `history`), each once.

        Shared ledger only (SQLite: nothing, one process); before `history`, nothing either: the
        history read counts everything up to its own snapshot.
        """
        since, owner, store = self.fills_seen, self.lease.owner, self.store
        if since is None:
            return []

        def read(conn: Connection) -> tuple[str | None, list[Any]]:
            until = store.snapshot(conn)
            return until, [] if until is None else store.fills_since(conn, since, until, owner)

        until, rows = await self.writer.submit("fills_elsewhere", read)
        self.fills_seen = until
        return _settled(rows)


def _settled(rows: list[Any]) -> list[tuple[bytes, LegIntent]]:
    return [(bytes(row[0]), leg_from_row(tuple(row[1:]))) for row in rows]
