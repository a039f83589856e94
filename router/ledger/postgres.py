"""The shared ledger: a PostgreSQL database that any number of routers use at once.

`[router] ledger_url = "postgresql://user@host:port/db"` puts the ledger here
(psycopg 3, autocommit connections: every transaction is explicit). The
records' SQL is the SQLite ledger's; the adapter turns its `?` placeholders
into psycopg's, and the schema below is the same tables with PostgreSQL's
types (BIGINT times, BYTEA messages) plus `now_ns()`, the database's clock,
which every router's leases are measured by — so hosts' clocks never matter —
and `legs.settled_xid`, the transaction that settled each leg, by which every
router reads the fills the others made (`fills_since`: global positions).

Claims stay exact under concurrency: a claim is `INSERT … ON CONFLICT DO
NOTHING` (one winner per request_id), a takeover is an `UPDATE` guarded by the
lease's expiry, and every write of a request checks that this router still
owns it (`router.ledger.requests`). Transactions run at READ COMMITTED; one
that loses a deadlock against another router's batch is run again (nothing of
it was applied). The schema is created or migrated under an advisory lock, so
routers starting together do it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from router.errors import LedgerError
from router.ledger.store import Connection

# the columns of a leg, in router.ledger.legs.LEG_COLUMNS order
LEG_COLUMN_NAMES: Final = (
    "request_id", "leg", "venue", "client_order_id", "side", "quantity", "limit_price", "state", "outcome",
)  # fmt: skip

SCHEMA_TABLE: Final = "smartroute_ledger"
_MIGRATION_LOCK: Final = 0x736D7274  # the advisory lock held while the schema is created or migrated
CONNECT_TIMEOUT_S: Final = 10

# MIGRATIONS[i] takes the schema from version i to i + 1 (SQLite's five steps, as one).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE FUNCTION now_ns() RETURNS BIGINT LANGUAGE sql VOLATILE
        AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000000000)::BIGINT $$;
    CREATE TABLE requests (
        request_id     TEXT PRIMARY KEY CHECK (length(request_id) > 0),
        user_id        TEXT NOT NULL,
        request        BYTEA NOT NULL,
        state          TEXT NOT NULL CHECK (state IN ('executing', 'done')),
        result         BYTEA,
        claimed_ns     BIGINT NOT NULL,
        completed_ns   BIGINT,
        owner          TEXT NOT NULL DEFAULT '',
        lease_until_ns BIGINT NOT NULL DEFAULT 0,
        CHECK ((state = 'executing') = (result IS NULL AND completed_ns IS NULL))
    );
    CREATE INDEX requests_executing ON requests (claimed_ns) WHERE state = 'executing';
    CREATE INDEX requests_done ON requests (completed_ns) WHERE state = 'done';
    CREATE INDEX requests_claimed ON requests (claimed_ns, request_id);
    CREATE INDEX requests_leases ON requests (owner, lease_until_ns);
    CREATE TABLE legs (
        request_id      TEXT NOT NULL REFERENCES requests (request_id) ON DELETE CASCADE,
        leg             INTEGER NOT NULL CHECK (leg >= 0),
        venue           TEXT NOT NULL CHECK (length(venue) > 0),
        client_order_id TEXT NOT NULL UNIQUE CHECK (length(client_order_id) > 0),
        side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        quantity        TEXT NOT NULL,
        limit_price     TEXT,
        state           TEXT NOT NULL CHECK (state IN ('intent', 'sent', 'settled')),
        outcome         BYTEA,
        settled_by      TEXT,
        settled_xid     XID8,
        CHECK (state <> 'settled' OR outcome IS NOT NULL),
        PRIMARY KEY (request_id, leg)
    );
    CREATE INDEX legs_unsettled ON legs (request_id, leg) WHERE state <> 'settled';
    CREATE INDEX legs_settled_xid ON legs (settled_xid);
    CREATE FUNCTION legs_settled_xid() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN NEW.settled_xid := pg_current_xact_id(); RETURN NEW; END $$;
    CREATE TRIGGER legs_settled BEFORE UPDATE OF state ON legs FOR EACH ROW
        WHEN (NEW.state = 'settled' AND OLD.state <> 'settled') EXECUTE FUNCTION legs_settled_xid();
    CREATE TABLE flags (
        name  TEXT PRIMARY KEY CHECK (length(name) > 0),
        value BYTEA NOT NULL
    );
    CREATE TABLE acknowledged_legs (
        request_id      TEXT NOT NULL,
        leg             INTEGER NOT NULL,
        venue_order_id  TEXT NOT NULL CHECK (length(venue_order_id) > 0),
        PRIMARY KEY (request_id, leg),
        FOREIGN KEY (request_id, leg) REFERENCES legs (request_id, leg) ON DELETE CASCADE
    );
    CREATE TABLE residuals (
        request_id  TEXT PRIMARY KEY REFERENCES requests (request_id) ON DELETE CASCADE,
        venue       TEXT NOT NULL CHECK (length(venue) > 0),
        symbol      TEXT NOT NULL CHECK (length(symbol) > 0),
        side        TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        quantity    TEXT NOT NULL,
        remaining   TEXT NOT NULL,
        started_ns  BIGINT NOT NULL,
        attempts    INTEGER NOT NULL CHECK (attempts >= 0),
        state       TEXT NOT NULL CHECK (state IN ('open', 'flat', 'abandoned', 'left')),
        updated_ns  BIGINT NOT NULL
    );
    CREATE INDEX residuals_open ON residuals (started_ns) WHERE state = 'open';
    CREATE TABLE owed_results (
        request_id  TEXT PRIMARY KEY REFERENCES requests (request_id) ON DELETE CASCADE,
        since_ns    BIGINT NOT NULL,
        error       TEXT NOT NULL
    );
    CREATE TABLE routers (
        owner          TEXT PRIMARY KEY CHECK (length(owner) > 0),
        alive_until_ns BIGINT NOT NULL
    )
    """,
)


class PgConnection:
    """A psycopg 3 connection (autocommit) that runs the records' `?`-placeholder SQL."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._sql: dict[str, str] = {}

    @property
    def in_transaction(self) -> bool:
        """Tell whether a transaction is open (or failed and not yet rolled back)."""
        return self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        """Run one statement: `?` becomes `%s` (and a literal `%` is escaped)."""
        query = self._sql.get(sql)
        if query is None:
            query = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return self._conn.execute(query.encode(), tuple(parameters))

    def rollback(self) -> None:
        """Roll back the open transaction; a broken connection has nothing to roll back."""
        if not self._conn.closed:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


@dataclass(frozen=True, slots=True)
class PostgresStore:
    """A ledger in the PostgreSQL database at `url`, shared by every router that names it."""

    url: str
    begin: str = "BEGIN"
    begin_snapshot: str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    errors: tuple[type[Exception], ...] = field(default=(psycopg.Error,))
    shared: bool = True

    @property
    def name(self) -> str:
        """Return the database's address without its password."""
        return redact_url(self.url)

    def open(self) -> PgConnection:
        """Connect, then create or migrate the schema under an advisory lock (once among routers)."""
        conn = self.connect()
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            version = self._version(conn)
            for step in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[step].split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(
                f"INSERT INTO {SCHEMA_TABLE} (id, version) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                (len(MIGRATIONS),),
            )
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            conn.close()
            raise LedgerError(f"ledger {self.name}: cannot open: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def connect(self) -> PgConnection:
        """Return a new autocommit connection (bounded by CONNECT_TIMEOUT_S)."""
        try:
            raw = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise LedgerError(f"ledger {self.name}: cannot connect: {exc}") from exc
        return PgConnection(raw)

    def retryable(self, exc: BaseException) -> bool:
        """A deadlock or serialization failure: the transaction was rolled back whole; run it again."""
        return isinstance(exc, pg_errors.DeadlockDetected | pg_errors.SerializationFailure)

    def lock(self, conn: Connection, name: str) -> None:
        """Take the transaction-scoped advisory lock named `name` (released at commit or rollback)."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (name,))

    def snapshot(self, conn: Connection) -> str | None:
        """Return the snapshot now (`pg_current_snapshot()`): the mark `fills_since` reads from."""
        return str(conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0])

    def fills_since(self, conn: Connection, since: str, until: str, owner: str) -> list[Any]:
        """Return (request, leg columns…) of every leg settled by another owner after `since`, by `until`.

        Exactly the legs whose settling transaction is visible in snapshot `until` and was not in
        `since`: each one is returned by one call of a chain of calls, never twice, never missed.
        """
        columns = ", ".join(f"legs.{name}" for name in LEG_COLUMN_NAMES)
        return list(
            conn.execute(
                f"SELECT requests.request, {columns} FROM legs JOIN requests USING (request_id)"
                " WHERE legs.state = 'settled' AND legs.settled_by <> ?"
                " AND legs.settled_xid >= pg_snapshot_xmin(?::pg_snapshot)"
                " AND NOT pg_visible_in_snapshot(legs.settled_xid, ?::pg_snapshot)"
                " AND pg_visible_in_snapshot(legs.settled_xid, ?::pg_snapshot)"
                " ORDER BY legs.settled_xid, legs.request_id, legs.leg",
                (owner, since, since, until),
            ).fetchall()
        )

    def _version(self, conn: PgConnection) -> int:
        """Return the schema's version (0: an empty database); refuse one that is not ours or too new."""
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (id INTEGER PRIMARY KEY, version INTEGER)")
        row = conn.execute(f"SELECT version FROM {SCHEMA_TABLE} WHERE id = 1").fetchone()
        version = 0 if row is None else int(row[0])
        if version > len(MIGRATIONS):
            raise LedgerError(
                f"ledger {self.name}: schema version {version} is newer than this smartroute "
                f"understands ({len(MIGRATIONS)})"
            )
        if version == 0:
            found = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'requests'").fetchone()
            if found[0]:
                raise LedgerError(
                    f"ledger {self.name}: the database has a 'requests' table that is not a smartroute ledger"
                )
        return version


def redact_url(url: str) -> str:
    """Return `url` without its password, for logs and errors; an unparsable URL is not echoed."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(an unparsable URL)"
    user = parts.get("user")
    host = parts.get("host") or "localhost"
    port = parts.get("port")
    where = f"{host}:{port}" if port else str(host)
    return f"postgresql://{f'{user}@' if user else ''}{where}/{parts.get('dbname') or ''}"


def ledger_url_problem(url: str) -> str | None:
    """Say what is wrong with `[router] ledger_url`, or None: a postgresql:// URL without a password."""
    if not url.startswith(("postgresql://", "postgres://")):
        return "must be a postgresql:// URL (leave it out for the SQLite ledger in state_dir)"
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "is not a valid PostgreSQL connection URL"
    if parts.get("password"):
        return (
            "must not contain a password: set PGPASSWORD in the service's environment file, "
            "or use a ~/.pgpass file (libpq reads both)"
        )
    if not parts.get("dbname"):
        return "must name the database (postgresql://user@host:port/DATABASE)"
    return None
