"""LedgerFile: the SQLite connections under every ledger record — opening, migrating, transactions.

The file is in WAL mode with synchronous=FULL, so every write is on disk before
the call returns. Two connections: the synchronous one (open, migrate, reads,
and the rare writes made off the order path, each its own short transaction)
and the group writer's (`router.ledger.writer`), which owns the hot path's
writes, batched one durable transaction per batch on its own thread. WAL lets
the synchronous connection read while the writer writes, and every read sees
what was committed before it began. Small durable flags (the kill switch) and
the file's statistics live here too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog

from router.errors import LedgerError
from router.ledger.schema import APPLICATION_ID, BUSY_TIMEOUT_MS, FILE_NAME, MIGRATIONS
from router.ledger.writer import GroupWriter

log = structlog.get_logger("router.ledger")


class LedgerFile:
    """One open ledger file at the current schema version; the records' base class."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the ledger file at `path` and bring its schema up to date."""
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"ledger {path}: cannot open: {exc}") from exc
        try:
            self._configure(conn)
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise LedgerError(f"ledger {path}: cannot open: {exc}") from exc
        except LedgerError:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn
        try:
            self.writer = GroupWriter(path)
        except LedgerError:
            conn.close()
            raise
        log.info("ledger_opened", path=str(path), **self.stats())

    @classmethod
    def open(cls, state_dir: Path) -> Self:
        """Open the ledger kept in `state_dir`."""
        return cls(state_dir / FILE_NAME)

    def _configure(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._check_identity(conn)  # before any write, so a foreign file is left exactly as it was
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"ledger {self.path}: WAL journal mode unavailable (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # Read the version inside the write transaction: two processes opening a new file at once
        # must not both create the schema.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._check_identity(conn)
            for step in range(version, len(MIGRATIONS)):
                # executescript() would COMMIT first; running statements one by one keeps the
                # migration and the version bump in one transaction.
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise

    def _check_identity(self, conn: sqlite3.Connection) -> int:
        """Return the file's schema version; refuse files that are not (or not yet) ours."""
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise LedgerError(
                f"ledger {self.path}: schema version {version} is newer than this smartroute "
                f"understands ({len(MIGRATIONS)})"
            )
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise LedgerError(f"ledger {self.path}: an SQLite database that is not a smartroute ledger")
        elif conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            raise LedgerError(f"ledger {self.path}: an SQLite database that is not a smartroute ledger")
        return version

    def _fail(self, action: str, problem: object) -> LedgerError:
        return LedgerError(f"ledger {self.path}: {action}: {problem}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise self._fail("use", "the ledger is closed")
        return self._conn

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """Run one durable write transaction; map SQLite's errors to LedgerError."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._fail(action, exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.rollback()
            raise self._fail(action, exc) from exc
        except BaseException:
            conn.rollback()
            raise

    def _read(self, action: str, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(action, exc) from exc

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
        """Close the file; closing again is a no-op."""
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
