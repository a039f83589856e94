"""Owed results: requests the background settler must still answer on the results topic.

A request whose execution or settlement failed (a venue that stays dark, an
outcome the venue cannot tell yet) stays claimed and in flight, and a row here
says its result is owed. The row is durable before the orders offset is
committed past the request, so the answer is never lost: after a restart every
owed row goes back to the settler (`router.settler`), which settles the request
from the ledger and the venue if it is still in flight, publishes its result,
and only then deletes the row.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.ledger.file import LedgerFile, owns
from router.ledger.store import Connection


@dataclass(frozen=True, slots=True)
class OwedResult:
    """A request whose result the settler owes; `result` is set once it is settled (done)."""

    request_id: str
    request: bytes
    since_ns: int
    error: str
    result: bytes | None


class OwedRecords(LedgerFile):
    """Record, list and clear the results the settler owes."""

    def owe(self, request_id: str, *, since_ns: int, error: str) -> None:
        """Record that `request_id` (claimed) is answered by the settler; again: update the error."""
        with self._write("owe") as conn:
            self._owe(conn, request_id, since_ns, error)

    async def aowe(self, request_id: str, *, since_ns: int, error: str) -> None:
        """`owe` through the group writer: returns once the row is on disk."""
        await self.writer.submit("owe", lambda conn: self._owe(conn, request_id, since_ns, error))

    def _owe(self, conn: Connection, request_id: str, since_ns: int, error: str) -> None:
        if not owns(conn, self.lease, request_id, "owe"):
            raise self._fail("owe", f"request {request_id!r} was never claimed")
        conn.execute(
            "INSERT INTO owed_results (request_id, since_ns, error) VALUES (?, ?, ?)"
            " ON CONFLICT (request_id) DO UPDATE SET error = excluded.error",
            (request_id, since_ns, error),
        )

    def owed(self) -> list[OwedResult]:
        """Return the owed results this router holds, oldest first, with request and (settled) result."""
        rows = self._read(
            "owed",
            "SELECT owed_results.request_id, requests.request, since_ns, error, requests.result"
            " FROM owed_results JOIN requests USING (request_id) WHERE requests.owner = ?"
            " ORDER BY since_ns, request_id",
            (self.lease.owner,),
        )
        return [
            OwedResult(str(rid), bytes(raw), int(since), str(err), None if res is None else bytes(res))
            for rid, raw, since, err, res in rows
        ]

    def answered(self, request_id: str) -> None:
        """Forget the owed result of `request_id`: it was published and acknowledged."""
        with self._write("answered") as conn:
            _forget(conn, request_id)

    async def aanswered(self, request_id: str) -> None:
        """`answered` through the group writer."""
        await self.writer.submit("answered", lambda conn: _forget(conn, request_id))


def _forget(conn: Connection, request_id: str) -> None:
    conn.execute("DELETE FROM owed_results WHERE request_id = ?", (request_id,))
