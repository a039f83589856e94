"""Leases: which router holds each claim, renewed while it lives, taken over once it expired.

A request's row names its `owner` and `lease_until_ns`, measured by the
database's clock (`now_ns()`). A router acts on a request — records a leg,
sends it, settles it, completes it, owes its result — only while it owns the
claim: every such write checks the owner in its own transaction
(`router.ledger.file.owns`), so a router that lost the request to another one
(it was paused, or cut off from the database, for longer than its lease) is
refused with `LeaseLost` and stops acting on it. Sending a leg also renews the
lease to its full length in the same transaction, so the venue call that
follows ends long before anyone may take the request over — unless the process
is frozen between the two for longer than a lease, the one window no lease can
close (README "Running several routers" says how to size `lease_ms`).

While a router lives it renews the leases of every request it holds
(`renew_leases`: in flight, result owed, or residual open). A request whose
lease expired belongs to nobody alive: any router takes it over
(`take_over_expired`) in one transaction — new owner, new lease, its result
owed — and its settler settles it from the ledger and the venue, never by
sending again, and publishes the result.

Each router also says it is alive in the `routers` table every step; how many
are alive divides the desk's order-rate limit between them (`arouters_alive`).

On SQLite the owner is "local" and the lease never expires: one process, which
after a restart owns every claim it left.
"""

from __future__ import annotations

from collections.abc import Callable

from router.ledger.file import LedgerFile
from router.ledger.owed import OwedResult
from router.ledger.store import Connection

_FORGOTTEN_NS = 3600 * 10**9  # a router not seen for this long leaves the routers table

# A request someone must hold: in flight, its result owed, or a residual still open. Read from the
# three small sets (a partial index, two small tables), never by walking every answered request.
_LIVE = (
    "request_id IN (SELECT request_id FROM requests WHERE state = 'executing'"
    " UNION SELECT request_id FROM owed_results"
    " UNION SELECT request_id FROM residuals WHERE state = 'open')"
)


class LeaseRecords(LedgerFile):
    """Renew this router's leases; take over the claims whose lease expired."""

    async def arenew_leases(self) -> int:
        """Extend the lease of every live request this router holds; return how many."""
        if not self.lease.expires:
            return 0
        owner, ttl = self.lease.owner, self.lease.ttl_ns

        def renew(conn: Connection) -> int:
            cursor = conn.execute(
                f"UPDATE requests SET lease_until_ns = now_ns() + ? WHERE owner = ? AND {_LIVE}",
                (ttl, owner),
            )
            return int(cursor.rowcount)

        return await self.writer.submit("renew_leases", renew)

    async def atake_over_expired(self, busy: Callable[[str], bool], *, limit: int = 100) -> list[OwedResult]:
        """Take over up to `limit` live requests whose lease expired and that are not `busy` here.

        In one transaction: each becomes this router's with a fresh lease, and its result is owed
        (the settler settles and answers it). Return them, with their results when already done.
        """
        if not self.lease.expires:
            return []
        owner, ttl = self.lease.owner, self.lease.ttl_ns

        def take(conn: Connection) -> list[OwedResult]:
            rows = conn.execute(
                "SELECT request_id, owner FROM requests"
                f" WHERE lease_until_ns < now_ns() AND {_LIVE} ORDER BY claimed_ns LIMIT ?",
                (limit,),
            ).fetchall()
            taken = []
            for request_id, previous in rows:
                if busy(str(request_id)):
                    continue
                row = conn.execute(
                    "UPDATE requests SET owner = ?, lease_until_ns = now_ns() + ?"
                    " WHERE request_id = ? AND lease_until_ns < now_ns()"
                    " RETURNING request, result, claimed_ns, state = 'executing',"
                    " EXISTS (SELECT 1 FROM owed_results o WHERE o.request_id = requests.request_id)",
                    (owner, ttl, request_id),
                ).fetchone()
                if row is None:  # renewed or taken by another router meanwhile
                    continue
                raw, result, claimed_ns, executing, owed = row
                if not (executing or owed):  # only its residual is open: the residual worker takes it
                    continue
                error = f"taken over from {previous!r}, whose lease expired"
                conn.execute(
                    "INSERT INTO owed_results (request_id, since_ns, error) VALUES (?, now_ns(), ?)"
                    " ON CONFLICT (request_id) DO UPDATE SET error = excluded.error",
                    (request_id, error),
                )
                taken.append(OwedResult(str(request_id), bytes(raw), int(claimed_ns), error, _bytes(result)))
            return taken

        return await self.writer.submit("take_over_expired", take)

    async def arouters_alive(self) -> int:
        """Say this router is alive for another lease; return how many routers are (1 on SQLite)."""
        if not self.lease.expires:
            return 1
        owner, ttl = self.lease.owner, self.lease.ttl_ns

        def beat(conn: Connection) -> int:
            conn.execute(
                "INSERT INTO routers (owner, alive_until_ns) VALUES (?, now_ns() + ?)"
                " ON CONFLICT (owner) DO UPDATE SET alive_until_ns = excluded.alive_until_ns",
                (owner, ttl),
            )
            conn.execute("DELETE FROM routers WHERE alive_until_ns < now_ns() - ?", (_FORGOTTEN_NS,))
            return int(
                conn.execute("SELECT count(*) FROM routers WHERE alive_until_ns > now_ns()").fetchone()[0]
            )

        return await self.writer.submit("routers_alive", beat)


def _bytes(value: object) -> bytes | None:
    return None if value is None else bytes(value)  # type: ignore[call-overload]
