"""The trading seam: what a live executor needs of a venue's signed REST client, in venue-neutral terms.

Every live venue has one client in `connectors/<venue>/` that implements
`TradingVenue` with the value types below. The router never sees a venue's
own payloads: each client maps its venue's answers onto `OrderReport`,
`TradeFill`, `SymbolRules` and `AccountBalance`, and its venue's errors onto
the tree in `connectors.errors`:

    VenueError
     ├── VenueRejected(venue, code, message, status)   the venue answered and refused: nothing executed
     │    ├── OrderNotFound                            the venue has no order with that client id
     │    ├── DuplicateOrder                           that client id is already taken: query it
     │    └── ClockRejected                            our timestamp/nonce fell outside its window
     ├── OutcomeUnknown                                timeout, dropped connection, 5xx, the venue's
     │                                                 "unknown result" codes: only a query can tell
     ├── RateLimited(retry_after_s)                    throttled: nothing was executed; wait first
     ├── VenueBanned(until_s)                          banned: nothing is sent until `until_s`
     ├── OrderRuleViolation                            the order breaks the symbol's rules: not sent
     └── VenueConnectionError
          └── VenueUnreachable                         no connection could be opened: nothing was sent

The rule every client and the executor keep: an order whose fate is unknown
is settled by querying its client order id on the venue, never by sending it
again. "No such order" is final only once the venue's acceptance window has
passed (`acceptance_window_ms` after the send): Bybit's recv window, OKX's
`expTime`, Kraken's `deadline`, Coinbase's JWT lifetime, Binance's recvWindow.
On OKX and Kraken a client id is unique only among *open* orders, so a second
IOC order with the same id would execute again.

Client order ids are derived from (request id, leg) by one scheme for every
venue (`order_uuid`): 16 bytes of SHA-256 shaped as an RFC 4122 version-4
UUID, sent as 32 hex digits where hyphens are not allowed (OKX, Bybit) and
as the 36-character UUID where a UUID is expected (Kraken, Coinbase).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal, Protocol

from connectors.errors import OrderRuleViolation
from connectors.types import Side, decimal_text

ClientIdStyle = Literal["hex32", "uuid36"]

_ZERO = Decimal(0)


def order_uuid(request_id: str, leg: int) -> uuid.UUID:
    """Return the deterministic UUID of leg `leg` of `request_id`: the same after any restart."""
    digest = bytearray(hashlib.sha256(f"{request_id}\x1f{leg}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40  # version 4
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return uuid.UUID(bytes=bytes(digest))


def venue_client_order_id(request_id: str, leg: int, style: ClientIdStyle) -> str:
    """Return the leg's client order id in the form a venue accepts (`hex32` or `uuid36`)."""
    value = order_uuid(request_id, leg)
    return value.hex if style == "hex32" else str(value)


@dataclass(frozen=True, slots=True)
class TradeFill:
    """One execution of an order, with the fee the venue charged for it."""

    trade_id: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    time_ms: int | None


@dataclass(frozen=True, slots=True)
class OrderReport:
    """What a venue says about one order, placed or queried, in venue-neutral terms.

    `status` is the venue's own word (for logs and messages); `is_open` tells
    whether the order can still trade. `fills` may be empty even when
    `executed_qty` is not: then `TradingVenue.order_trades` gives them.
    """

    symbol: str
    venue_order_id: str
    client_order_id: str
    side: Side
    status: str
    is_open: bool
    price: Decimal
    orig_qty: Decimal
    executed_qty: Decimal
    cumulative_quote_qty: Decimal
    time_ms: int | None
    fills: tuple[TradeFill, ...] = ()

    @property
    def average_price(self) -> Decimal | None:
        """Return the average execution price, or None when nothing executed."""
        if self.executed_qty <= 0:
            return None
        return self.cumulative_quote_qty / self.executed_qty


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """One asset of the trading account: what can be used now and what open orders hold."""

    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        """Return free + locked."""
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """The trading rules of one symbol; a zero tick, step, minimum or maximum disables that check.

    Grids start at `min_price` and `min_qty` (Binance measures steps from them; on
    venues whose minimums sit on the grid, that is the same as from zero).
    """

    venue_symbol: str
    base_asset: str
    quote_asset: str
    tradable: bool
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal = _ZERO
    max_qty: Decimal = _ZERO
    min_notional: Decimal = _ZERO
    max_notional: Decimal = _ZERO
    min_price: Decimal = _ZERO
    max_price: Decimal = _ZERO

    def round_quantity(self, quantity: Decimal) -> Decimal:
        """Return `quantity` rounded down onto the lot grid (never more than asked)."""
        return _on_grid(quantity, self.min_qty, self.step_size, ROUND_FLOOR)

    def round_price(self, price: Decimal, side: Side) -> Decimal:
        """Return `price` on the tick grid: a buy rounds down, a sell up — never worse than `price`."""
        return _on_grid(
            price, self.min_price, self.tick_size, ROUND_FLOOR if side == "buy" else ROUND_CEILING
        )

    def prepare(self, side: Side, quantity: Decimal, limit_price: Decimal) -> tuple[Decimal, Decimal]:
        """Return (quantity, price) on the grids in the requester's favour; raise if still invalid.

        The quantity rounds down (never more than asked), a buy's price down and a
        sell's up (never worse than the limit).
        """
        if not self.tradable:
            raise OrderRuleViolation(f"{self.venue_symbol} is not trading")
        qty = self.round_quantity(quantity)
        price = self.round_price(limit_price, side)
        self._check_quantity(quantity, qty)
        self._check_price(limit_price, price)
        notional = qty * price
        if notional < self.min_notional:
            raise OrderRuleViolation(
                f"{self.venue_symbol} order notional {decimal_text(notional)} "
                f"({decimal_text(qty)} at {decimal_text(price)}) is below the minimum "
                f"{decimal_text(self.min_notional)}"
            )
        if self.max_notional and notional > self.max_notional:
            raise OrderRuleViolation(
                f"{self.venue_symbol} order notional {decimal_text(notional)} is above the maximum "
                f"{decimal_text(self.max_notional)}"
            )
        return qty, price

    def _check_quantity(self, requested: Decimal, qty: Decimal) -> None:
        if qty <= 0 or qty < self.min_qty:
            raise OrderRuleViolation(
                f"{self.venue_symbol} quantity {decimal_text(requested)} is below the minimum "
                f"{decimal_text(max(self.min_qty, self.step_size))} once rounded to the lot step"
            )
        if self.max_qty and qty > self.max_qty:
            raise OrderRuleViolation(
                f"{self.venue_symbol} quantity {decimal_text(qty)} is above the maximum "
                f"{decimal_text(self.max_qty)}"
            )

    def _check_price(self, limit: Decimal, price: Decimal) -> None:
        if price <= 0 or price < self.min_price:
            raise OrderRuleViolation(
                f"{self.venue_symbol} limit price {decimal_text(limit)} is below the minimum price "
                f"{decimal_text(self.min_price)} once rounded to the tick"
            )
        if self.max_price and price > self.max_price:
            raise OrderRuleViolation(
                f"{self.venue_symbol} limit price {decimal_text(limit)} is above the maximum price "
                f"{decimal_text(self.max_price)} once rounded to the tick"
            )


def _on_grid(value: Decimal, anchor: Decimal, step: Decimal, rounding: str) -> Decimal:
    if step <= 0:
        return value
    steps = ((value - anchor) / step).to_integral_value(rounding=rounding)
    return anchor + steps * step


class TradingVenue(Protocol):
    """A venue's signed REST client for spot trading, as the live executor uses it.

    Every method maps the venue's errors onto `connectors.errors` (see the module
    docstring); no method ever re-sends an order on its own.
    """

    @property
    def venue(self) -> str:
        """Return the venue id (`okx`)."""
        ...

    @property
    def client_id_style(self) -> ClientIdStyle:
        """Return the form of client order id the venue accepts."""
        ...

    @property
    def acceptance_window_ms(self) -> int:
        """Return how long after a send the venue may still accept it; then "not found" is final."""
        ...

    async def start(self) -> None:
        """Open the session, measure the clock offset, load the symbols' rules; idempotent."""
        ...

    async def close(self) -> None:
        """Close the session; idempotent."""
        ...

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        """Return the trading rules of a canonical symbol (`BTC-USDT`)."""
        ...

    async def place_order(
        self, symbol: str, side: Side, quantity: Decimal, price: Decimal, client_order_id: str
    ) -> OrderReport:
        """Place one IOC limit order; raise OutcomeUnknown when its fate is unknown."""
        ...

    async def query_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Return the order with this client id; raise OrderNotFound when the venue has none."""
        ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport:
        """Cancel the open order with this client id; raise OrderNotFound when there is none open."""
        ...

    async def order_trades(self, symbol: str, report: OrderReport) -> tuple[TradeFill, ...]:
        """Return the executions of the order in `report`, with their fees."""
        ...

    async def open_orders(self) -> list[OrderReport]:
        """Return every open order of the account on the configured symbols."""
        ...

    async def balances(self) -> dict[str, AccountBalance]:
        """Return the account's spot balances by asset (upper case)."""
        ...

    async def taker_fee_bps(self, symbol: str) -> Decimal | None:
        """Return the account's actual taker fee for `symbol` in bps, or None if the venue cannot tell."""
        ...
