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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import structlog

from router.errors import LedgerError

ClaimStatus = Literal["new", "in_flight", "done"]
LegState = Literal["intent", "sent", "settled"]

FILE_NAME = "ledger.sqlite3"
_APPLICATION_ID = 0x736D7274  # "smrt": tells our file apart from any other SQLite database
_BUSY_TIMEOUT_MS = 5_000
_LEG_ORDER: dict[str, int] = {"intent": 0, "sent": 1, "settled": 2}

# _MIGRATIONS[i] takes the schema from user_version i to i + 1, in one transaction.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE requests (
        request_id   TEXT PRIMARY KEY CHECK (length(request_id) > 0),
        user_id      TEXT NOT NULL,
        request      BLOB NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('executing', 'done')),
        result       BLOB,
        claimed_ns   INTEGER NOT NULL,
        completed_ns INTEGER,
        CHECK ((state = 'executing') = (result IS NULL AND completed_ns IS NULL))
    );
    CREATE INDEX requests_executing ON requests (claimed_ns) WHERE state = 'executing';
    CREATE INDEX requests_done ON requests (completed_ns) WHERE state = 'done';
    CREATE TABLE legs (
        request_id      TEXT NOT NULL REFERENCES requests (request_id) ON DELETE CASCADE,
        leg             INTEGER NOT NULL CHECK (leg >= 0),
        venue           TEXT NOT NULL CHECK (length(venue) > 0),
        client_order_id TEXT NOT NULL UNIQUE CHECK (length(client_order_id) > 0),
        side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        quantity        TEXT NOT NULL,
        limit_price     TEXT,
        state           TEXT NOT NULL CHECK (state IN ('intent', 'sent', 'settled')),
        outcome         BLOB,
        CHECK (state <> 'settled' OR outcome IS NOT NULL),
        PRIMARY KEY (request_id, leg)
    );
    CREATE INDEX legs_unsettled ON legs (request_id, leg) WHERE state <> 'settled';
    CREATE TABLE flags (
        name  TEXT PRIMARY KEY CHECK (length(name) > 0),
        value BLOB NOT NULL
    );
    """,
    # 1 → 2: a venue acknowledged a leg (gave it an order id) before its state could be read: the
    # order exists, so a restart must never settle that leg as "never placed".
    """
    CREATE TABLE acknowledged_legs (
        request_id      TEXT NOT NULL,
        leg             INTEGER NOT NULL,
        venue_order_id  TEXT NOT NULL CHECK (length(venue_order_id) > 0),
        PRIMARY KEY (request_id, leg),
        FOREIGN KEY (request_id, leg) REFERENCES legs (request_id, leg) ON DELETE CASCADE
    );
    """,
)
_LEG_COLUMNS = "request_id, leg, venue, client_order_id, side, quantity, limit_price, state, outcome"

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Claim:
    """What the ledger knows of a request_id at the moment it was claimed."""

    status: ClaimStatus
    request_id: str
    result: bytes | None  # the stored result message, when status is "done"


@dataclass(frozen=True, slots=True)
class LegIntent:
    """One order leg as the ledger holds it; `client_order_id` is deterministic per (request, leg)."""

    request_id: str
    leg: int
    venue: str
    client_order_id: str
    side: str
    quantity: Decimal
    limit_price: Decimal | None
    state: LegState
    outcome: bytes | None  # venue response / fill summary as JSON bytes once settled


class Ledger:
    """Record each request before and after execution so it never executes twice."""

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
        log.info("ledger_opened", path=str(path), **self.stats())

    @classmethod
    def open(cls, state_dir: Path) -> Ledger:
        """Open the ledger kept in `state_dir`."""
        return cls(state_dir / FILE_NAME)

    def _configure(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
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
            for step in range(version, len(_MIGRATIONS)):
                # executescript() would COMMIT first; running statements one by one keeps the
                # migration and the version bump in one transaction.
                for statement in _MIGRATIONS[step].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(_MIGRATIONS)}")
            conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise

    def _check_identity(self, conn: sqlite3.Connection) -> int:
        """Return the file's schema version; refuse files that are not (or not yet) ours."""
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            raise LedgerError(
                f"ledger {self.path}: schema version {version} is newer than this smartroute "
                f"understands ({len(_MIGRATIONS)})"
            )
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise LedgerError(f"ledger {self.path}: an SQLite database that is not a smartroute ledger")
        elif conn.execute("PRAGMA application_id").fetchone()[0] != _APPLICATION_ID:
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

    def claim(self, request_id: str, user_id: str, request: bytes, *, now_ns: int) -> Claim:
        """Claim `request_id` for execution; only a "new" claim may be executed.

        "in_flight": claimed before and never completed (e.g. a crash mid-execution) — do not
        execute; "done": already answered — re-emit `result`. A re-sent request with a known id
        is answered from the ledger whatever its body.
        """
        if not request_id:
            raise self._fail("claim", "empty request_id")
        with self._write("claim") as conn:
            row = conn.execute(
                "SELECT state, result FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO requests (request_id, user_id, request, state, claimed_ns)"
                    " VALUES (?, ?, ?, 'executing', ?)",
                    (request_id, user_id, bytes(request), now_ns),
                )
                return Claim("new", request_id, None)
        if row[0] == "executing":
            return Claim("in_flight", request_id, None)
        return Claim("done", request_id, bytes(row[1]))

    def complete(self, request_id: str, result: bytes, *, now_ns: int) -> None:
        """Store the result of a claimed request; completing again with the same bytes is a no-op."""
        with self._write("complete") as conn:
            row = conn.execute(
                "SELECT state, result FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                raise self._fail("complete", f"request {request_id!r} was never claimed")
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
        """List (request_id, request bytes) claimed but never completed, oldest claim first."""
        rows = self._read(
            "in_flight",
            "SELECT request_id, request FROM requests WHERE state = 'executing'"
            " ORDER BY claimed_ns, request_id",
        )
        return [(str(rid), bytes(req)) for rid, req in rows]

    def record_leg_intent(self, intent: LegIntent) -> None:
        """Record a leg before its venue call; recording the same intent again is a no-op.

        A leg whose (request_id, leg) is known with different fields, a client order id used by
        another leg, or a new leg for a request that is not executing raises LedgerError.
        """
        action, problem = "record_leg_intent", _intent_problem(intent)
        if problem is not None:
            raise self._fail(action, problem)
        leg_name = f"leg {intent.leg} of {intent.request_id!r}"
        with self._write(action) as conn:
            existing = _fetch_legs(conn, "request_id = ? AND leg = ?", (intent.request_id, intent.leg))
            if existing:
                if not _same_intent(existing[0], intent):
                    raise self._fail(action, f"{leg_name} is already recorded with different fields")
                return
            found = conn.execute(
                "SELECT state FROM requests WHERE request_id = ?", (intent.request_id,)
            ).fetchone()
            if found is None or found[0] != "executing":
                raise self._fail(action, f"request {intent.request_id!r} is not executing")
            limit = None if intent.limit_price is None else str(intent.limit_price)
            row = (*_leg_key(intent), str(intent.quantity), limit)
            conn.execute(
                f"INSERT INTO legs ({_LEG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'intent', NULL)", row
            )

    def mark_leg(
        self, request_id: str, leg: int, state: Literal["sent", "settled"], outcome: bytes | None = None
    ) -> None:
        """Move a leg forward to "sent" or "settled" (settled needs the outcome); repeats are no-ops."""
        leg_name = f"leg {leg} of {request_id!r}"
        if state not in ("sent", "settled"):
            raise self._fail("mark_leg", f"state must be 'sent' or 'settled', got {state!r}")
        if state == "settled" and outcome is None:
            raise self._fail("mark_leg", f"settling {leg_name} needs an outcome")
        with self._write("mark_leg") as conn:
            found = _fetch_legs(conn, "request_id = ? AND leg = ?", (request_id, leg))
            if not found:
                raise self._fail("mark_leg", f"{leg_name} is not recorded")
            current = found[0]
            if state == current.state and outcome == current.outcome:
                return
            if _LEG_ORDER[state] <= _LEG_ORDER[current.state]:
                raise self._fail(
                    "mark_leg", f"{leg_name} is {current.state}; cannot mark it {state} with this outcome"
                )
            conn.execute(
                "UPDATE legs SET state = ?, outcome = ? WHERE request_id = ? AND leg = ?",
                (state, None if outcome is None else bytes(outcome), request_id, leg),
            )

    def record_acknowledged(self, request_id: str, leg: int, venue_order_id: str) -> None:
        """Record that the venue acknowledged a sent leg as `venue_order_id` (durable before it is used)."""
        with self._write("record_acknowledged") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO acknowledged_legs (request_id, leg, venue_order_id) VALUES (?, ?, ?)",
                (request_id, leg, venue_order_id),
            )

    def acknowledged(self, request_id: str) -> dict[int, str]:
        """Return leg → venue order id for the legs of `request_id` a venue acknowledged."""
        rows = self._read(
            "acknowledged",
            "SELECT leg, venue_order_id FROM acknowledged_legs WHERE request_id = ?",
            (request_id,),
        )
        return {int(row[0]): str(row[1]) for row in rows}

    def legs(self, request_id: str) -> list[LegIntent]:
        """Return the legs recorded for `request_id`, in leg order."""
        return self._legs("legs", "request_id = ?", (request_id,))

    def leg_by_client_order_id(self, client_order_id: str) -> LegIntent | None:
        """Return the leg sent under `client_order_id` (unique and indexed), or None: not one of ours."""
        found = self._legs("leg_by_client_order_id", "client_order_id = ?", (client_order_id,))
        return found[0] if found else None

    def unsettled_legs(self) -> list[LegIntent]:
        """Return every leg not yet settled — what startup reconciliation asks the venues about."""
        return self._legs("unsettled_legs", "state <> 'settled'", ())

    def settled_legs(self) -> list[tuple[bytes, LegIntent]]:
        """Return every settled leg with its request's bytes, oldest first — to rebuild positions at start."""
        columns = ", ".join(f"legs.{name}" for name in _LEG_COLUMNS.split(", "))
        query = (
            f"SELECT requests.request, {columns} FROM legs JOIN requests USING (request_id) "
            "WHERE legs.state = 'settled' ORDER BY requests.claimed_ns, legs.request_id, legs.leg"
        )
        try:
            rows = self._connection().execute(query).fetchall()
        except sqlite3.Error as exc:
            raise self._fail("settled_legs", exc) from exc
        return [(bytes(row[0]), _leg_from_row(row[1:])) for row in rows]

    def _legs(self, action: str, where: str, params: tuple[object, ...]) -> list[LegIntent]:
        try:
            return _fetch_legs(self._connection(), where, params)
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

    def prune_done(self, older_than_ns: int) -> int:
        """Delete requests completed before `older_than_ns` (with their legs); return how many.

        Executing requests and requests with an unsettled leg are always kept. A pruned
        request_id is forgotten: choose the bound well beyond the time a request can still be
        redelivered or re-sent (the orders topic's retention).
        """
        with self._write("prune_done") as conn:
            deleted = conn.execute(
                "DELETE FROM requests WHERE state = 'done' AND completed_ns < ? AND NOT EXISTS"
                " (SELECT 1 FROM legs WHERE legs.request_id = requests.request_id"
                " AND legs.state <> 'settled')",
                (older_than_ns,),
            ).rowcount
        log.info("ledger_pruned", path=str(self.path), deleted=deleted, older_than_ns=older_than_ns)
        return deleted

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
            conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _intent_problem(intent: LegIntent) -> str | None:
    """Say what is wrong with a new leg intent, or None if it may be recorded."""
    if intent.state != "intent" or intent.outcome is not None:
        return "a new leg must have state 'intent' and no outcome"
    if isinstance(intent.leg, bool) or not isinstance(intent.leg, int) or intent.leg < 0:
        return f"leg must be an integer >= 0, got {intent.leg!r}"
    if not intent.request_id or not intent.venue or not intent.client_order_id:
        return "request_id, venue and client_order_id must be non-empty"
    if intent.side not in ("buy", "sell"):
        return f"side must be 'buy' or 'sell', got {intent.side!r}"
    if not _positive(intent.quantity):
        return f"quantity must be a finite decimal > 0, got {intent.quantity!r}"
    if intent.limit_price is not None and not _positive(intent.limit_price):
        return f"limit_price must be a finite decimal > 0, got {intent.limit_price!r}"
    return None


def _positive(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value > 0


def _leg_key(leg: LegIntent) -> tuple[str, int, str, str, str]:
    return (leg.request_id, leg.leg, leg.venue, leg.client_order_id, leg.side)


def _same_intent(stored: LegIntent, intent: LegIntent) -> bool:
    # State and outcome are not compared: re-recording an intent that has since been sent or
    # settled is still the same intent, and must neither fail nor move it back. Decimals compare
    # by value, so "1.0" and "1.00" are the same quantity.
    return _leg_key(stored) == _leg_key(intent) and (stored.quantity, stored.limit_price) == (
        intent.quantity,
        intent.limit_price,
    )


def _fetch_legs(conn: sqlite3.Connection, where: str, params: tuple[object, ...]) -> list[LegIntent]:
    rows = conn.execute(
        f"SELECT {_LEG_COLUMNS} FROM legs WHERE {where} ORDER BY request_id, leg", params
    ).fetchall()
    return [_leg_from_row(row) for row in rows]


def _leg_from_row(row: tuple[Any, ...]) -> LegIntent:
    rid, leg, venue, coid, side, quantity, limit, state, outcome = row
    limit_price = None if limit is None else Decimal(limit)
    outcome = None if outcome is None else bytes(outcome)
    return LegIntent(rid, leg, venue, coid, side, Decimal(quantity), limit_price, state, outcome)
