"""Residual records: the unhedged quantity an arbitrage left, tracked as a position until flat.

    recorded ──► open ──(attempts)──► flat          nothing left
                   └──────────────────► abandoned    not flat in time: trading halted
    recorded ──► left                                residual_policy = "report": the desk's to handle

The residual is recorded before any leg works it. Each attempt to flatten it is
a leg of the same request (leg numbers 2, 3, 4, …), recorded together with the
attempt count in one transaction, so two workers can never send the same
attempt. `remaining` is the quantity still unhedged after the settled attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from router.ledger.file import LedgerFile, owns
from router.ledger.legs import LEG_COLUMNS, LegIntent, fetch_legs, intent_problem
from router.ledger.store import Connection

ResidualState = Literal["open", "flat", "abandoned", "left"]

_COLUMNS = "request_id, venue, symbol, side, quantity, remaining, started_ns, attempts, state, updated_ns"
_FINAL: frozenset[str] = frozenset({"flat", "abandoned", "left"})


@dataclass(frozen=True, slots=True)
class ResidualRecord:
    """An arbitrage's unhedged quantity: where it sits, the side that flattens it, how far it got."""

    request_id: str
    venue: str  # the venue whose leg over-filled: where the position is
    symbol: str
    side: str  # the side that flattens it: "sell" for a long residual, "buy" for a short one
    quantity: Decimal  # unhedged after the arbitrage's two legs
    remaining: Decimal  # still unhedged after the settled attempts
    started_ns: int
    attempts: int
    state: ResidualState
    updated_ns: int


class ResidualRecords(LedgerFile):
    """Record residuals, the legs that work them, and how they end."""

    def record_residual(self, residual: ResidualRecord) -> ResidualRecord:
        """Record a new residual (state "open" or "left"); return the stored one if already recorded."""
        action = "record_residual"
        if problem := _residual_problem(residual):
            raise self._fail(action, problem)
        with self._write(action) as conn:
            owns(conn, self.lease, residual.request_id, action)
            stored = _fetch(conn, residual.request_id)
            if stored is not None:
                return stored
            conn.execute(
                f"INSERT INTO residuals ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _row(residual),
            )
        return residual

    def residual(self, request_id: str) -> ResidualRecord | None:
        """Return the residual of `request_id`, or None if its legs left none."""
        rows = self._read("residual", f"SELECT {_COLUMNS} FROM residuals WHERE request_id = ?", (request_id,))
        return _from_row(rows[0]) if rows else None

    def open_residuals(self) -> list[ResidualRecord]:
        """Return every residual still being worked by this router, oldest first.

        On a shared ledger another router's residuals are its own to work, or taken over once its
        lease expired (`router.ledger.leases`).
        """
        columns = ", ".join(f"residuals.{name}" for name in _COLUMNS.split(", "))
        rows = self._read(
            "open_residuals",
            f"SELECT {columns} FROM residuals JOIN requests USING (request_id)"
            " WHERE residuals.state = 'open' AND requests.owner = ?"
            " ORDER BY residuals.started_ns, residuals.request_id",
            (self.lease.owner,),
        )
        return [_from_row(row) for row in rows]

    def record_residual_attempt(self, intent: LegIntent, *, now_ns: int) -> bool:
        """Record the leg of the next attempt on an open residual and count it; False if taken.

        False means another worker recorded this leg number, or a previous attempt is not
        settled yet: the caller must not send anything.
        """
        action = "record_residual_attempt"
        if problem := intent_problem(intent):
            raise self._fail(action, problem)
        with self._write(action) as conn:
            owns(conn, self.lease, intent.request_id, action, renew=True)  # LeaseLost first
            stored = _fetch(conn, intent.request_id)
            if stored is None or stored.state != "open":
                raise self._fail(action, f"request {intent.request_id!r} has no open residual")
            if fetch_legs(
                conn, "request_id = ? AND (leg = ? OR state <> 'settled')", (intent.request_id, intent.leg)
            ):
                return False
            limit = None if intent.limit_price is None else str(intent.limit_price)
            row = (intent.request_id, intent.leg, intent.venue, intent.client_order_id, intent.side)
            conn.execute(
                f"INSERT INTO legs ({LEG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'intent', NULL)",
                (*row, str(intent.quantity), limit),
            )
            conn.execute(
                "UPDATE residuals SET attempts = attempts + 1, updated_ns = ? WHERE request_id = ?",
                (now_ns, intent.request_id),
            )
        return True

    def update_residual(
        self, request_id: str, *, remaining: Decimal, state: ResidualState, now_ns: int
    ) -> ResidualRecord:
        """Store what is left of an open residual and its state; a final state never changes."""
        action = "update_residual"
        if not isinstance(remaining, Decimal) or not remaining.is_finite() or remaining < 0:
            raise self._fail(action, f"remaining must be a finite decimal >= 0, got {remaining!r}")
        if state == "left":
            raise self._fail(action, "a residual is left only when it is recorded")
        with self._write(action) as conn:
            owns(conn, self.lease, request_id, action)
            stored = _fetch(conn, request_id)
            if stored is None:
                raise self._fail(action, f"request {request_id!r} has no residual")
            if stored.state in _FINAL:
                if (stored.state, stored.remaining) == (state, remaining):
                    return stored
                raise self._fail(action, f"the residual of {request_id!r} is already {stored.state}")
            conn.execute(
                "UPDATE residuals SET remaining = ?, state = ?, updated_ns = ? WHERE request_id = ?",
                (str(remaining), state, now_ns, request_id),
            )
            updated = _fetch(conn, request_id)
        assert updated is not None
        return updated


def _residual_problem(residual: ResidualRecord) -> str | None:
    if residual.state not in ("open", "left"):
        return f"a new residual must be 'open' or 'left', got {residual.state!r}"
    if not residual.request_id or not residual.venue or not residual.symbol:
        return "request_id, venue and symbol must be non-empty"
    if residual.side not in ("buy", "sell"):
        return f"side must be 'buy' or 'sell', got {residual.side!r}"
    quantity, remaining = residual.quantity, residual.remaining
    if not isinstance(quantity, Decimal) or not quantity.is_finite() or quantity <= 0:
        return f"quantity must be a finite decimal > 0, got {quantity!r}"
    if not isinstance(remaining, Decimal) or not remaining.is_finite() or not 0 <= remaining <= quantity:
        return f"remaining must be a decimal in [0, quantity], got {remaining!r}"
    if residual.attempts != 0:
        return "a new residual has made no attempt"
    return None


def _row(r: ResidualRecord) -> tuple[object, ...]:
    return (
        r.request_id,
        r.venue,
        r.symbol,
        r.side,
        str(r.quantity),
        str(r.remaining),
        r.started_ns,
        r.attempts,
        r.state,
        r.updated_ns,
    )


def _fetch(conn: Connection, request_id: str) -> ResidualRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM residuals WHERE request_id = ?", (request_id,)).fetchone()
    return None if row is None else _from_row(row)


def _from_row(row: tuple[Any, ...]) -> ResidualRecord:
    rid, venue, symbol, side, quantity, remaining, started_ns, attempts, state, updated_ns = row
    return ResidualRecord(
        str(rid),
        str(venue),
        str(symbol),
        str(side),
        Decimal(quantity),
        Decimal(remaining),
        int(started_ns),
        int(attempts),
        state,
        int(updated_ns),
    )
