"""Request records: each request_id is claimed once, completed once, and its result kept.

    unknown ──claim──► executing ──complete──► done (result stored)

A second claim of an `executing` request answers "in_flight" — never "new" —
so a crash between execution and completion cannot cause a second execution;
`in_flight()` lists what a restart must settle. A claim is one atomic insert
(`ON CONFLICT DO NOTHING`): of several routers claiming one request_id at once,
exactly one gets "new". On a shared ledger a claim another live router holds
answers "held" (that router answers it; `router.ledger.leases`), and one whose
holder's lease expired is taken over and answers "in_flight". Completing needs
the claim (`LeaseLost` otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from router.ledger.file import LedgerFile, log, owns
from router.ledger.store import Connection

ClaimStatus = Literal["new", "in_flight", "held", "done"]


@dataclass(frozen=True, slots=True)
class Claim:
    """What the ledger knows of a request_id at the moment it was claimed."""

    status: ClaimStatus
    request_id: str
    result: bytes | None  # the stored result message, when status is "done"


class RequestRecords(LedgerFile):
    """Claim, complete and look up requests."""

    def claim(self, request_id: str, user_id: str, request: bytes, *, now_ns: int) -> Claim:
        """Claim `request_id` for execution; only a "new" claim may be executed.

        "in_flight": claimed before and never completed (e.g. a crash mid-execution, or a claim
        taken over from a router whose lease expired) — do not execute, settle it; "held": another
        live router holds it and answers it — do nothing; "done": already answered — re-emit
        `result`. A re-sent request with a known id
        is answered from the ledger whatever its body.
        """
        with self._write("claim") as conn:
            return self._claim(conn, request_id, user_id, request, now_ns)

    async def aclaim(self, request_id: str, user_id: str, request: bytes, *, now_ns: int) -> Claim:
        """`claim` through the group writer: returns once the claim is on disk, off the event loop."""
        return await self.writer.submit(
            "claim", lambda conn: self._claim(conn, request_id, user_id, request, now_ns)
        )

    def _claim(self, conn: Connection, request_id: str, user_id: str, request: bytes, now_ns: int) -> Claim:
        if not request_id:
            raise self._fail("claim", "empty request_id")
        owner, ttl = self.lease.owner, self.lease.ttl_ns
        inserted = conn.execute(
            "INSERT INTO requests (request_id, user_id, request, state, claimed_ns, owner, lease_until_ns)"
            " VALUES (?, ?, ?, 'executing', ?, ?, now_ns() + ?) ON CONFLICT (request_id) DO NOTHING",
            (request_id, user_id, bytes(request), now_ns, owner, ttl),
        )
        if inserted.rowcount == 1:
            return Claim("new", request_id, None)
        state, result, holder, expired = conn.execute(
            "SELECT state, result, owner, lease_until_ns < now_ns() FROM requests WHERE request_id = ?",
            (request_id,),
        ).fetchone()
        if state == "done":
            return Claim("done", request_id, bytes(result))
        if holder == owner:
            return Claim("in_flight", request_id, None)
        if not expired:
            return Claim("held", request_id, None)
        taken = conn.execute(
            "UPDATE requests SET owner = ?, lease_until_ns = now_ns() + ?"
            " WHERE request_id = ? AND owner = ? AND state = 'executing' AND lease_until_ns < now_ns()",
            (owner, ttl, request_id, holder),
        )
        if taken.rowcount != 1:  # completed, renewed, or taken by a third router, meanwhile
            done = conn.execute(
                "SELECT result FROM requests WHERE request_id = ? AND state = 'done'", (request_id,)
            ).fetchone()
            return (
                Claim("held", request_id, None) if done is None else Claim("done", request_id, bytes(done[0]))
            )
        log.warning("ledger_claim_taken_over", request_id=request_id, previous=holder, owner=owner)
        return Claim("in_flight", request_id, None)

    def complete(self, request_id: str, result: bytes, *, now_ns: int) -> None:
        """Store the result of a claimed request; completing again with the same bytes is a no-op."""
        with self._write("complete") as conn:
            self._complete(conn, request_id, result, now_ns)

    async def acomplete(self, request_id: str, result: bytes, *, now_ns: int) -> None:
        """`complete` through the group writer: returns once the result is on disk."""
        await self.writer.submit("complete", lambda conn: self._complete(conn, request_id, result, now_ns))

    def _complete(self, conn: Connection, request_id: str, result: bytes, now_ns: int) -> None:
        if not owns(conn, self.lease, request_id, "complete"):  # another router's now: LeaseLost
            raise self._fail("complete", f"request {request_id!r} was never claimed")
        row = conn.execute(
            "SELECT state, result FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()
        if row[0] == "done":
            if bytes(row[1]) != result:
                raise self._fail("complete", f"request {request_id!r} already has a different result")
            return
        conn.execute(
            "UPDATE requests SET state = 'done', result = ?, completed_ns = ? WHERE request_id = ?",
            (bytes(result), now_ns, request_id),
        )

    def result_for(self, request_id: str) -> bytes | None:
        """Return the stored result of `request_id`, or None if it is unknown or not done."""
        rows = self._read(
            "result_for", "SELECT result FROM requests WHERE request_id = ? AND state = 'done'", (request_id,)
        )
        return bytes(rows[0][0]) if rows else None

    def in_flight(self) -> list[tuple[str, bytes]]:
        """List (request_id, request bytes) this router holds, claimed but never completed, oldest first.

        On SQLite: every claim a previous run left. On a shared ledger: this router's own (other
        routers' claims are theirs, or taken over once their lease expired).
        """
        rows = self._read(
            "in_flight",
            "SELECT request_id, request FROM requests WHERE state = 'executing' AND owner = ?"
            " ORDER BY claimed_ns, request_id",
            (self.lease.owner,),
        )
        return [(str(rid), bytes(req)) for rid, req in rows]
