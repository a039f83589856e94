"""Settling requests a crash (or a venue that could not tell) left in flight; reading results back.

A request is in flight when its claim is in the ledger but its result is
not. Each of its legs is settled from what the ledger recorded: a settled
leg keeps its recorded fills; a leg recorded only as intent or sent is
settled by the executor from what the venue knows (paper: it never filled).
Nothing is ever sent again. An arbitrage is judged by its two legs like any
other (`router.arbitrage.settle_arbitrage`): one leg filled and the other not
is never `filled`, and the residual is recorded and worked.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

import orjson
import structlog

from router.arbitrage import BUY_LEG, SELL_LEG, settle_arbitrage
from router.execution import Fill
from router.legs import LegRunner
from router.residual_worker import ResidualWorker
from router.results import ExecutionResult, Status, fill_status

log = structlog.get_logger(__name__)


async def recover_request(
    legs: LegRunner, residuals: ResidualWorker, request_id: str, raw: bytes, now_ns: int
) -> ExecutionResult:
    """Return the result of an interrupted request, settling each of its legs without resending.

    An arbitrage's result is rebuilt from its two legs exactly as after a normal execution
    (never `filled` for one leg); any residual they left is recorded and worked.
    """
    document = _document(raw)
    symbol = str(document.get("symbol", ""))
    outcomes, reconciled = await legs.settle(request_id, symbol)
    note = (
        f"; settled after an interruption (a restart, or a venue that could not tell at once): "
        f"{len(outcomes) - reconciled} leg(s) from the ledger, {reconciled} "
        "reconciled with the executor; nothing was sent again"
    )
    by_leg = {o.leg.leg: o for o in outcomes}
    if document.get("kind") == "arbitrage" and BUY_LEG in by_leg and SELL_LEG in by_leg:
        outcome = await residuals.settle_arbitrage(
            request_id,
            str(document.get("user_id", "")),
            symbol,
            _quantity(document),
            by_leg[BUY_LEG],
            by_leg[SELL_LEG],
        )
        log.warning("request_recovered", request_id=request_id, legs=len(outcomes), reconciled=reconciled)
        return settle_arbitrage(
            outcome, None, mode=legs.mode, received_ns=now_ns, completed_ns=now_ns, note=note
        )
    fills = tuple(f for o in outcomes for f in o.fills)
    requested = _quantity(document)
    filled = sum((f.quantity for f in fills), Decimal(0))
    status: Status = fill_status(requested, filled) if requested > 0 else "failed"
    log.warning("request_recovered", request_id=request_id, legs=len(outcomes), reconciled=reconciled)
    return ExecutionResult(
        request_id=request_id,
        user_id=str(document.get("user_id", "")),
        kind=str(document["kind"]) if document.get("kind") in ("order", "arbitrage") else None,
        mode=legs.mode,
        status=status,
        reject_code=None,
        message=note.removeprefix("; "),
        received_ns=now_ns,
        completed_ns=now_ns,
        fills=fills,
        symbol=symbol or None,
    )


def _document(raw: bytes) -> Mapping[str, object]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def _quantity(document: Mapping[str, object]) -> Decimal:
    try:
        return Decimal(str(document.get("quantity", "0")))
    except InvalidOperation:
        return Decimal(0)


def result_from_message(data: Mapping[str, object]) -> ExecutionResult:
    """Rebuild an ExecutionResult from its message (what the ledger stores)."""
    known = {
        "symbol",
        "fees_other",
        "v",
        "request_id",
        "user_id",
        "kind",
        "mode",
        "status",
        "reject_code",
        "message",
        "fills",
        "filled_quantity",
        "avg_price",
        "fees_total",
        "route",
        "residual",
        "received_ns",
        "completed_ns",
    }
    fills = data.get("fills") or []
    assert isinstance(fills, list)
    route, residual = data.get("route"), data.get("residual")
    return ExecutionResult(
        request_id=str(data["request_id"]),
        user_id=str(data["user_id"]),
        kind=None if data.get("kind") is None else str(data["kind"]),
        mode="live" if data.get("mode") == "live" else "paper",
        status=_status(data.get("status")),
        reject_code=None if data.get("reject_code") is None else str(data["reject_code"]),
        message=str(data.get("message", "")),
        received_ns=int(str(data.get("received_ns", 0))),
        completed_ns=int(str(data.get("completed_ns", 0))),
        fills=tuple(Fill.from_message(f) for f in fills),
        route=route if isinstance(route, dict) else None,
        residual=residual if isinstance(residual, dict) else None,
        extra={k: v for k, v in data.items() if k not in known},
        hedged_quantity=Decimal(str(data["filled_quantity"])) if data.get("kind") == "arbitrage" else None,
        symbol=str(data["symbol"]) if isinstance(data.get("symbol"), str) else None,
    )


def _status(value: object) -> Status:
    for status in ("filled", "partially_filled", "rejected", "failed"):
        if value == status:
            return status
    raise ValueError(f"stored result has unknown status {value!r}")
