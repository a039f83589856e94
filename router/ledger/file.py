"""LedgerFile: the connections under every ledger record — opening, migrating, transactions.

The ledger lives in a `Store` (`router.ledger.store`): an SQLite file in WAL
mode with synchronous=FULL, or a PostgreSQL database shared by several routers
(`router.ledger.postgres`); every write is durable before the call returns.
Two connections: the synchronous one (open, migrate, reads, and the rare writes
made off the order path, each its own short transaction) and the group
writer's (`router.ledger.writer`), which owns the hot path's writes, batched
one durable transaction per batch on its own thread. Every read sees what was
committed before it began. The `Lease` says who this process claims requests
as. Small durable flags (the kill switch) and the ledger's statistics live here
too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog

from router.errors import LeaseLost, LedgerError
from router.ledger.store import Connection, Lease, SqliteStore, Store, reconnected, rolled_back
from router.ledger.writer import GroupWriter

log = structlog.get_logger("router.ledger")


class LedgerFile:
    """One open ledger at the current schema version; the records' base class."""

    def __init__(self, where: Path | Store, lease: Lease | None = None) -> None:
        """Open (creating if needed) the ledger — an SQLite file's path, or a store — at its schema."""
        self.store: Store = SqliteStore(where) if isinstance(where, Path) else where
        self.lease = lease or Lease()
        if self.lease.expires != self.store.shared:
            raise LedgerError(
                f"ledger {self.store.name}: a {'shared' if self.store.shared else 'single-process'} ledger "
                f"needs {'an expiring' if self.store.shared else 'the local'} lease"
            )
        conn = self.store.open()
        self._conn: Connection | None = conn
        self._lock = threading.RLock()  # the synchronous connection serves one caller at a time
        self.fills_seen: str | None = None  # shared ledger: where the reading of others' fills is
        try:
            self.writer = GroupWriter(self.store)
        except LedgerError:
            conn.close()
            raise
        log.info("ledger_opened", ledger=self.store.name, owner=self.lease.owner, **self.stats())

    @classmethod
    def open(cls, state_dir: Path) -> Self:
        """Open the SQLite ledger kept in `state_dir`."""
        return cls(SqliteStore.in_dir(state_dir))

    @property
    def where(self) -> str:
        """Say where the ledger is (a path, or a database URL without its password)."""
        return self.store.name

    def _fail(self, action: str, problem: object) -> LedgerError:
        return LedgerError(f"ledger {self.store.name}: {action}: {problem}")

    def _connection(self) -> Connection:
        if self._conn is None:
            raise self._fail("use", "the ledger is closed")
        return self._conn

    @contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        """Run one durable write transaction; map the database's errors to LedgerError."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(self.store.begin)
            except self.store.errors as exc:
                raise self._failed(conn, action, exc) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except self.store.errors as exc:
                raise self._failed(conn, action, exc) from exc
            except BaseException:
                self._recover(conn)
                raise

    @contextmanager
    def _snapshot(self, action: str) -> Iterator[Connection]:
        """Run reads in one transaction that sees one snapshot of the ledger throughout."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(self.store.begin_snapshot)
                try:
                    yield conn
                finally:
                    conn.execute("COMMIT")
            except self.store.errors as exc:
                raise self._failed(conn, action, exc) from exc

    def _read(self, action: str, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        with self._lock:
            conn = self._connection()
            try:
                return list(conn.execute(sql, params).fetchall())
            except self.store.errors as exc:
                raise self._failed(conn, action, exc) from exc

    def _failed(self, conn: Connection, action: str, exc: Exception) -> LedgerError:
        """Undo what `conn` had open (reconnecting if it broke) and return the error to raise."""
        self._recover(conn)
        return self._fail(action, exc)

    def _recover(self, conn: Connection) -> None:
        """Roll back what `conn` had open; if it broke (a database restart), reconnect for the next call."""
        if not rolled_back(conn, self.store):
            self._conn = reconnected(conn, self.store)

    def set_flag(self, name: str, value: bytes | None) -> None:
        """Store a small durable value under `name`; None deletes it."""
        if not name:
            raise self._fail("set_flag", "empty flag name")
        with self._write("set_flag") as conn:
            if value is None:
                conn.execute("DELETE FROM flags WHERE name = ?", (name,))
            else:
                conn.execute(
                    "INSERT INTO flags (name, value) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (name, bytes(value)),
                )

    def get_flag(self, name: str) -> bytes | None:
        """Return the value stored under `name`, or None."""
        rows = self._read("get_flag", "SELECT value FROM flags WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    def stats(self) -> dict[str, int]:
        """Count requests and legs by state, and flags; every key is always present."""
        counts = dict.fromkeys(
            ("requests_executing", "requests_done", "legs_intent", "legs_sent", "legs_settled", "flags"), 0
        )
        rows = self._read(
            "stats",
            "SELECT 'requests_' || state, count(*) FROM requests GROUP BY state"
            " UNION ALL SELECT 'legs_' || state, count(*) FROM legs GROUP BY state"
            " UNION ALL SELECT 'flags', count(*) FROM flags",
        )
        for key, count in rows:
            counts[str(key)] = int(count)
        return counts

    def close(self) -> None:
        """Close the ledger; closing again is a no-op."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self.writer.close()  # what is queued is committed first
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def owns(conn: Connection, lease: Lease, request_id: str, action: str, *, renew: bool = False) -> bool:
    """Tell whether `request_id` exists; raise LeaseLost if `lease`'s owner does not hold its claim.

    The check is an UPDATE of the request's row guarded by its owner, so it holds the row's lock
    until the transaction ends: no other router can take the request over between this check and
    the write it guards (PostgreSQL; SQLite's write transaction excludes every other writer).
    `renew` (before a send): the lease is also extended to its full length from now, in the same
    statement — the venue call that follows has all of it. A lease that never expires (the
    single-process SQLite ledger) has nothing to lock or renew: the owner is read, nothing written.
    """
    if lease.expires:
        change = "lease_until_ns = now_ns() + ?" if renew else "owner = owner"
        params = (lease.ttl_ns, request_id, lease.owner) if renew else (request_id, lease.owner)
        sql = f"UPDATE requests SET {change} WHERE request_id = ? AND owner = ?"
        if conn.execute(sql, params).rowcount == 1:
            return True
    row = conn.execute("SELECT owner FROM requests WHERE request_id = ?", (request_id,)).fetchone()
    if row is None:
        return False
    if row[0] == lease.owner:
        return True
    raise LeaseLost(f"{action}: request {request_id!r} is held by {row[0]!r} now, not by {lease.owner!r}")
