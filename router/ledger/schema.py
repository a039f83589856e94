"""The ledger file's identity and its schema, as numbered migrations."""

from __future__ import annotations

from typing import Final

FILE_NAME: Final = "ledger.sqlite3"
APPLICATION_ID: Final = 0x736D7274  # "smrt": tells our file apart from any other SQLite database
BUSY_TIMEOUT_MS: Final = 5_000

# MIGRATIONS[i] takes the schema from user_version i to i + 1, in one transaction.
MIGRATIONS: tuple[str, ...] = (
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
    # 2 → 3: the unhedged quantity an arbitrage's legs left (its residual) is a tracked position,
    # recorded before it is worked and kept until flat — or abandoned, which halts trading.
    """
    CREATE TABLE residuals (
        request_id  TEXT PRIMARY KEY REFERENCES requests (request_id) ON DELETE CASCADE,
        venue       TEXT NOT NULL CHECK (length(venue) > 0),
        symbol      TEXT NOT NULL CHECK (length(symbol) > 0),
        side        TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        quantity    TEXT NOT NULL,
        remaining   TEXT NOT NULL,
        started_ns  INTEGER NOT NULL,
        attempts    INTEGER NOT NULL CHECK (attempts >= 0),
        state       TEXT NOT NULL CHECK (state IN ('open', 'flat', 'abandoned', 'left')),
        updated_ns  INTEGER NOT NULL
    );
    CREATE INDEX residuals_open ON residuals (started_ns) WHERE state = 'open';
    """,
    # 3 → 4: a request whose result is owed to the results topic by the background settler
    # (router.settler): its offset may be committed once this row is durable. And the index the
    # retention's pruning walks the requests in (the order positions are rebuilt in).
    """
    CREATE TABLE owed_results (
        request_id  TEXT PRIMARY KEY REFERENCES requests (request_id) ON DELETE CASCADE,
        since_ns    INTEGER NOT NULL,
        error       TEXT NOT NULL
    );
    CREATE INDEX requests_claimed ON requests (claimed_ns, request_id);
    """,
    # 4 → 5: who holds each claim and until when (router.ledger.store.Lease), and who settled each
    # leg. On SQLite the owner is "local" and never expires; existing claims become its own.
    """
    ALTER TABLE requests ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
    ALTER TABLE requests ADD COLUMN lease_until_ns INTEGER NOT NULL DEFAULT 9223372036854775807;
    CREATE INDEX requests_leases ON requests (owner, lease_until_ns);
    ALTER TABLE legs ADD COLUMN settled_by TEXT;
    """,
)
