"""Where a ledger lives: an SQLite file (one process) or a PostgreSQL database (any number of routers).

Every record module writes SQL once, with `?` placeholders, over a `Connection`
— sqlite3's own, or `router.ledger.postgres`'s adapter of a psycopg 3
connection — and the `Store` says what differs: how to connect and migrate,
how a write transaction begins, which errors are the database's, which of them
only mean "run the transaction again" (a PostgreSQL deadlock between two
routers' batches), and how a transaction takes a named exclusive lock.

A `Lease` names the process that claims requests and how long its claims stay
its own without renewal. On SQLite the owner is "local" and a claim never
expires: one process owns the file (a second daemon on the same state_dir is
refused), and after a crash the next start recovers every claim at once. On
PostgreSQL each process is its own owner and renews its claims' leases while it
lives (`router.leases`); the claims of one that stopped renewing are taken over
once their lease expired (`router.ledger.leases`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from router.errors import LedgerError
from router.ledger.schema import APPLICATION_ID, BUSY_TIMEOUT_MS, FILE_NAME, MIGRATIONS

LOCAL_OWNER: Final = "local"
# A lease that never expires, in ns: about 146 years (now + this still fits a signed 64-bit integer).
FOREVER_NS: Final = 2**62


class Connection(Protocol):
    """What the records use of a database connection (sqlite3's, or the PostgreSQL adapter)."""

    @property
    def in_transaction(self) -> bool:
        """Tell whether a transaction is open."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        """Run one statement with `?` placeholders; return a cursor (fetchone, fetchall, rowcount)."""

    def rollback(self) -> None:
        """Roll back the open transaction."""

    def close(self) -> None:
        """Close the connection."""


class Store(Protocol):
    """A database the ledger can live in."""

    @property
    def name(self) -> str:
        """Say where the ledger is, for messages (never a password)."""

    @property
    def begin(self) -> str:
        """Return the statement that opens a write transaction."""

    @property
    def begin_snapshot(self) -> str:
        """Return the statement that opens a read transaction seeing one snapshot throughout."""

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """Return the exception types that are the database's errors."""

    @property
    def shared(self) -> bool:
        """Tell whether several processes may use this ledger at once (claims then need leases)."""

    def open(self) -> Connection:
        """Return a new connection to a ledger at the current schema version (migrating it first)."""

    def connect(self) -> Connection:
        """Return a new connection to the (already migrated) ledger."""

    def retryable(self, exc: BaseException) -> bool:
        """Tell whether a failed transaction may simply run again (nothing of it was applied)."""

    def lock(self, conn: Connection, name: str) -> None:
        """Hold the exclusive lock `name` until the open transaction ends."""

    def snapshot(self, conn: Connection) -> str | None:
        """Return a mark of what is committed now, from which `fills_since` reads (None: one process)."""

    def fills_since(self, conn: Connection, since: str, until: str, owner: str) -> list[Any]:
        """Return the rows of the legs other owners settled after mark `since`, by mark `until`."""


def rolled_back(conn: Connection, store: Store) -> bool:
    """Roll back what `conn` has open after a failure; False: it broke (the database closed it)."""
    try:
        if conn.in_transaction:
            conn.rollback()
        conn.execute("SELECT 1").fetchall()
    except store.errors:
        return False
    return True


def reconnected(conn: Connection, store: Store) -> Connection:
    """Replace a broken connection; keep it (the next call fails and tries again) if none opens."""
    try:
        fresh = store.connect()
    except LedgerError:
        return conn
    with contextlib.suppress(*store.errors):
        conn.close()
    return fresh


@dataclass(frozen=True, slots=True)
class Lease:
    """Who claims requests in this process, and how long a claim stays theirs without renewal."""

    owner: str = LOCAL_OWNER
    ttl_ms: int | None = None  # None: never expires (the single-process SQLite ledger)

    @property
    def ttl_ns(self) -> int:
        """Return the lease's length in ns (FOREVER_NS when it never expires)."""
        return FOREVER_NS if self.ttl_ms is None else self.ttl_ms * 1_000_000

    @property
    def expires(self) -> bool:
        """Tell whether claims must be renewed to stay this owner's."""
        return self.ttl_ms is not None

    @classmethod
    def for_process(cls, ttl_ms: int) -> Lease:
        """Return a lease owned by this process alone: host, pid and a random part (a restart is new)."""
        return cls(f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}", ttl_ms)


@dataclass(frozen=True, slots=True)
class SqliteStore:
    """The embedded ledger: one SQLite file in WAL mode with synchronous=FULL."""

    path: Path
    begin: str = "BEGIN IMMEDIATE"
    begin_snapshot: str = "BEGIN"
    errors: tuple[type[Exception], ...] = field(default=(sqlite3.Error,))
    shared: bool = False

    @classmethod
    def in_dir(cls, state_dir: Path) -> SqliteStore:
        """Return the store of the ledger kept in `state_dir`."""
        return cls(state_dir / FILE_NAME)

    @property
    def name(self) -> str:
        """Return the file's path."""
        return str(self.path)

    def open(self) -> Connection:
        """Open (creating if needed) the file, check it is a ledger, bring its schema up to date."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"ledger {self.path}: cannot open: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._check_identity(conn)  # before any write, so a foreign file is left exactly as it was
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerError(f"ledger {self.path}: WAL journal mode unavailable (got {mode!r})")
            self._configure(conn)
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise LedgerError(f"ledger {self.path}: cannot open: {exc}") from exc
        except LedgerError:
            conn.close()
            raise
        return conn

    def connect(self) -> Connection:
        """Return another connection to the file, configured as the first."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._configure(conn)
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {self.path}: cannot connect: {exc}") from exc
        return conn

    def retryable(self, exc: BaseException) -> bool:
        """Nothing: SQLite's busy timeout already waits for the other writer."""
        return False

    def lock(self, conn: Connection, name: str) -> None:
        """Nothing to do: a write transaction (BEGIN IMMEDIATE) already excludes every other writer."""

    def snapshot(self, conn: Connection) -> str | None:
        """None: one process writes the file, so no other owner settles anything."""
        return None

    def fills_since(self, conn: Connection, since: str, until: str, owner: str) -> list[Any]:
        """Nothing: one process writes the file."""
        return []

    @staticmethod
    def _configure(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.create_function("now_ns", 0, time.time_ns)  # the lease clock, as PostgreSQL's function

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
