"""Leg records: each order leg's intent before its venue call, then `intent → sent → settled`.

A leg's client order id is deterministic per (request, leg). A venue that
acknowledged a leg (gave it an order id) before its state could be read is
recorded too, so a restart never settles that leg as "never placed".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from router.ledger.file import LedgerFile, owns
from router.ledger.store import Connection

LegState = Literal["intent", "sent", "settled"]

LEG_COLUMNS = "request_id, leg, venue, client_order_id, side, quantity, limit_price, state, outcome"
_LEG_ORDER: dict[str, int] = {"intent": 0, "sent": 1, "settled": 2}


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


class LegRecords(LedgerFile):
    """Record legs before they are sent and move them forward as they settle."""

    def record_leg_intent(self, intent: LegIntent) -> None:
        """Record a leg before its venue call; recording the same intent again is a no-op.

        A leg whose (request_id, leg) is known with different fields, a client order id used by
        another leg, or a new leg for a request that is not executing raises LedgerError.
        """
        with self._write("record_leg_intent") as conn:
            self._record_intent(conn, intent)

    async def arecord_leg_intents(self, intents: Sequence[LegIntent], *, sent: bool = False) -> None:
        """Record every leg of `intents` (all or none) through the group writer, before any is sent.

        With `sent`, each leg is marked "sent" in the same write: the caller sends them all next.
        """

        def record(conn: Connection) -> None:
            for intent in intents:
                self._record_intent(conn, intent)
                if sent:
                    self._mark(conn, intent.request_id, intent.leg, "sent", None)

        await self.writer.submit("record_leg_intent", record)

    def _record_intent(self, conn: Connection, intent: LegIntent) -> None:
        action, problem = "record_leg_intent", intent_problem(intent)
        if problem is not None:
            raise self._fail(action, problem)
        leg_name = f"leg {intent.leg} of {intent.request_id!r}"
        # The claim first: a router that lost the request must hear LeaseLost, not a state it did not make.
        owns(conn, self.lease, intent.request_id, action)
        existing = fetch_legs(conn, "request_id = ? AND leg = ?", (intent.request_id, intent.leg))
        if existing:
            if not _same_intent(existing[0], intent):
                raise self._fail(action, f"{leg_name} is already recorded with different fields")
            return
        found = conn.execute(
            "SELECT state FROM requests WHERE request_id = ?", (intent.request_id,)
        ).fetchone()
        if found is None or found[0] != "executing":
            raise self._fail(action, f"request {intent.request_id!r} is not executing")
        used = conn.execute(
            "SELECT request_id, leg FROM legs WHERE client_order_id = ?", (intent.client_order_id,)
        ).fetchone()
        if used is not None:
            raise self._fail(
                action,
                f"client order id {intent.client_order_id!r} is already used by leg {used[1]} of {used[0]!r}",
            )
        limit = None if intent.limit_price is None else str(intent.limit_price)
        row = (*_leg_key(intent), str(intent.quantity), limit)
        conn.execute(f"INSERT INTO legs ({LEG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'intent', NULL)", row)

    def mark_leg(
        self, request_id: str, leg: int, state: Literal["sent", "settled"], outcome: bytes | None = None
    ) -> None:
        """Move a leg forward to "sent" or "settled" (settled needs the outcome); repeats are no-ops."""
        with self._write("mark_leg") as conn:
            self._mark(conn, request_id, leg, state, outcome)

    async def amark_leg(
        self, request_id: str, leg: int, state: Literal["sent", "settled"], outcome: bytes | None = None
    ) -> None:
        """`mark_leg` through the group writer: returns once the leg's new state is on disk."""
        await self.writer.submit("mark_leg", lambda conn: self._mark(conn, request_id, leg, state, outcome))

    def _mark(self, conn: Connection, request_id: str, leg: int, state: str, outcome: bytes | None) -> None:
        leg_name = f"leg {leg} of {request_id!r}"
        if state not in ("sent", "settled"):
            raise self._fail("mark_leg", f"state must be 'sent' or 'settled', got {state!r}")
        if state == "settled" and outcome is None:
            raise self._fail("mark_leg", f"settling {leg_name} needs an outcome")
        # The claim first (LeaseLost, not another router's state); sending renews the lease, so the
        # venue call has all of it; settling only needs the claim.
        owns(conn, self.lease, request_id, "mark_leg", renew=state == "sent")
        found = fetch_legs(conn, "request_id = ? AND leg = ?", (request_id, leg))
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
            "UPDATE legs SET state = ?, outcome = ?, settled_by = ? WHERE request_id = ? AND leg = ?",
            (
                state,
                None if outcome is None else bytes(outcome),
                self.lease.owner if state == "settled" else None,
                request_id,
                leg,
            ),
        )

    def record_acknowledged(self, request_id: str, leg: int, venue_order_id: str) -> None:
        """Record that the venue acknowledged a sent leg as `venue_order_id` (durable before it is used)."""
        with self._write("record_acknowledged") as conn:
            self._acknowledge(conn, request_id, leg, venue_order_id)

    async def arecord_acknowledged(self, request_id: str, leg: int, venue_order_id: str) -> None:
        """`record_acknowledged` through the group writer: returns once it is on disk."""
        await self.writer.submit(
            "record_acknowledged", lambda conn: self._acknowledge(conn, request_id, leg, venue_order_id)
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

    def _legs(self, action: str, where: str, params: tuple[object, ...]) -> list[LegIntent]:
        rows = self._read(
            action, f"SELECT {LEG_COLUMNS} FROM legs WHERE {where} ORDER BY request_id, leg", params
        )
        return [leg_from_row(row) for row in rows]

    def _acknowledge(self, conn: Connection, request_id: str, leg: int, venue_order_id: str) -> None:
        owns(conn, self.lease, request_id, "record_acknowledged")
        conn.execute(
            "INSERT INTO acknowledged_legs (request_id, leg, venue_order_id) VALUES (?, ?, ?)"
            " ON CONFLICT (request_id, leg) DO NOTHING",
            (request_id, leg, venue_order_id),
        )


def intent_problem(intent: LegIntent) -> str | None:
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


def fetch_legs(conn: Connection, where: str, params: tuple[object, ...]) -> list[LegIntent]:
    rows = conn.execute(
        f"SELECT {LEG_COLUMNS} FROM legs WHERE {where} ORDER BY request_id, leg", params
    ).fetchall()
    return [leg_from_row(row) for row in rows]


def leg_from_row(row: tuple[Any, ...]) -> LegIntent:
    rid, leg, venue, coid, side, quantity, limit, state, outcome = row
    limit_price = None if limit is None else Decimal(limit)
    outcome = None if outcome is None else bytes(outcome)
    return LegIntent(rid, leg, venue, coid, side, Decimal(quantity), limit_price, state, outcome)
