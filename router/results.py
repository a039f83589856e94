"""ExecutionResult: the one answer to an order request (the `smartroute.results` message).

Figures are kept exact; `as_message` publishes them as `router.precision` says:
`avg_price` rounded against the taker (up for a buy, down for a sell) to 4
decimals beyond the fills' prices, `fees_total` and `fees_other` rounded up to 8
decimals. Fills are published as they happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import orjson

from connectors.types import Mode, decimal_text
from router.execution import Fill
from router.precision import money_up, publish_price

Status = Literal["filled", "partially_filled", "rejected", "failed"]


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """What happened to one request_id; every delivery of that request is answered with these bytes."""

    request_id: str
    user_id: str
    kind: str | None
    mode: Mode
    status: Status
    reject_code: str | None
    message: str
    received_ns: int
    completed_ns: int
    fills: tuple[Fill, ...] = ()
    route: dict[str, object] | None = None
    residual: dict[str, object] | None = None
    extra: dict[str, object] = field(default_factory=dict)
    hedged_quantity: Decimal | None = None  # arbitrage: the quantity both bought and sold
    symbol: str | None = None  # the request's symbol: tells a fee in the base asset from one in the quote

    @property
    def filled_quantity(self) -> Decimal:
        """Return the base quantity filled: every fill for an order, the hedged quantity for arbitrage."""
        if self.hedged_quantity is not None:
            return self.hedged_quantity
        return sum((f.quantity for f in self.fills), Decimal(0))

    @property
    def fees_total(self) -> Decimal:
        """Return the fees paid in the quote currency; a fee in the base asset counts at its fill price.

        Fees in any other asset (e.g. BNB) are not in this sum: see `fees_other`.
        """
        return sum((fee for f in self.fills if (fee := quote_fee(f, self.symbol)) is not None), Decimal(0))

    @property
    def fees_other(self) -> dict[str, Decimal]:
        """Return fees charged in assets that are neither side of the symbol, by asset."""
        other: dict[str, Decimal] = {}
        for fill in self.fills:
            if quote_fee(fill, self.symbol) is None:
                other[fill.fee_asset] = other.get(fill.fee_asset, Decimal(0)) + fill.fee
        return other

    @property
    def avg_price(self) -> Decimal | None:
        """Return the VWAP of every fill; None when nothing filled, and for arbitrage (two prices)."""
        filled = self.filled_quantity
        if filled == 0 or self.hedged_quantity is not None:
            return None
        return sum((f.price * f.quantity for f in self.fills), Decimal(0)) / filled

    @property
    def published_avg_price(self) -> Decimal | None:
        """Return `avg_price` as published: rounded against the taker, 4 decimals past the fill prices."""
        avg = self.avg_price
        if avg is None:
            return None
        return publish_price(avg, (f.price for f in self.fills), self.fills[0].side)

    def as_message(self) -> dict[str, object]:
        """Return the contract's JSON object (decimals as plain strings, `"v": 1`), figures as published."""
        avg = self.published_avg_price
        message: dict[str, object] = {
            "v": 1,
            "request_id": self.request_id,
            "user_id": self.user_id,
            "kind": self.kind,
            "mode": self.mode,
            "status": self.status,
            "reject_code": self.reject_code,
            "message": self.message,
            "fills": [f.as_message() for f in self.fills],
            "filled_quantity": decimal_text(self.filled_quantity),
            "avg_price": None if avg is None else decimal_text(avg),
            "fees_total": decimal_text(money_up(self.fees_total)),
            "route": self.route,
            "received_ns": self.received_ns,
            "completed_ns": self.completed_ns,
        }
        if self.residual is not None:
            message["residual"] = self.residual
        if self.symbol is not None:
            message["symbol"] = self.symbol
        if other := self.fees_other:
            message["fees_other"] = {
                asset: decimal_text(money_up(amount)) for asset, amount in sorted(other.items())
            }
        message.update(self.extra)
        return message

    def encode(self) -> bytes:
        """Return the message bytes that are stored in the ledger and produced to Kafka."""
        return orjson.dumps(self.as_message())


def quote_fee(fill: Fill, symbol: str | None) -> Decimal | None:
    """Return `fill`'s fee in the symbol's quote currency, or None when it was paid in another asset."""
    if symbol is None:
        return fill.fee
    base, quote = symbol.rsplit("-", 1)
    if fill.fee_asset == quote:
        return fill.fee
    if fill.fee_asset == base:
        return fill.fee * fill.price
    return None


def fill_status(requested: Decimal, filled: Decimal) -> Status:
    """Return filled / partially_filled / failed for an execution that was attempted."""
    if filled >= requested:
        return "filled"
    return "partially_filled" if filled > 0 else "failed"
