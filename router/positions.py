"""Net positions per asset and venue from fills, their value in the valuation currency, and realized PnL.

A fill of `BASE-QUOTE` moves its two assets and the fee's asset (`fill_flows`):

    buy  q at p:  BASE += q,  QUOTE -= p × q;     sell q at p:  BASE -= q,  QUOTE += p × q;
    fee f in F:   F -= f

Positions are kept per (venue, asset) and summed across venues. They start at
zero — the router knows what it traded, not what the account held before — and
are rebuilt from the ledger's fills at start, so limits survive restarts.

**Valuation.** An asset is priced in the valuation currency C (`[risk]
valuation_currency`) at the median of the fresh mids ((bid + ask) / 2) of
`ASSET-C` across venues, or else through a cross pair (`BTC-USDT` and `BTC-USD`
price USD in USDT, `fresh_mids`). Without a fresh mid, the last price known
for it — the last fresh mid seen, or the price of its last `ASSET-C` fill — is
used and flagged `stale`; an asset never priced is `unpriced`: it counts 0 in the
gross exposure (and `router.risk` refuses a request that grows it).

**Realized PnL, average cost per asset across venues.** Every flow of an asset
other than C is a trade of that asset against C at a unit value: the fill price
× the quote's value for the base, the quote's value for the quote, and the fee
asset's value for a fee. A flow that grows |position| (or opens one) adds
`quantity × unit` to the asset's cost basis; one that shrinks it realizes
`proceeds − released basis`, where the released basis is the share of the basis
the closed quantity carries (basis × closed / |position|, rounded half-even to
18 decimals; the rest stays in the basis, so nothing is lost to rounding). A
flow that crosses zero closes the old position, then opens the new one at the
same unit. A fee is also an expense of `fee × unit`, realized at once (a fee in
C costs its amount). Realized PnL is booked on the UTC day of the fill's `ts_ns`.
A flow whose unit value is unknown (an asset never priced) is left out of the
PnL, and the asset is listed as `pnl_unpriced`. On a rebuild, units that need a
price come from what is known then (last fills, and fresh mids if any).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Final

from connectors.types import Side, decimal_text
from router.cache import PriceCache
from router.execution import Fill

__all__ = [
    "EXACT",
    "BookState",
    "PositionBook",
    "Price",
    "fill_flows",
    "fresh_mids",
    "median_mid",
    "split_symbol",
    "utc_day",
]

# Prices and quantities are bounded (≤ 40 digits, magnitude 1e-40..1e40): sums of products fit in
# 400 digits exactly, and Inexact is trapped so no figure is ever silently rounded.
EXACT: Final = Context(prec=400, traps=[Inexact, InvalidOperation, Overflow, DivisionByZero])
# The one rounding: the share of a cost basis an average-cost reduction releases.
_SHARE: Final = Context(
    prec=500, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow, DivisionByZero]
)
_SHARE_QUANTUM: Final = Decimal("1e-18")
# A price derived through a cross pair is a quotient: the one valuation that is rounded.
_CROSS: Final = Context(prec=34, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow, DivisionByZero])
_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
_NS_PER_S: Final = 1_000_000_000

MidSource = Callable[[str], Decimal | None]


def split_symbol(symbol: str) -> tuple[str, str]:
    """Return (base, quote) of a canonical symbol: `BTC-USDT` → ("BTC", "USDT")."""
    base, sep, quote = symbol.rpartition("-")
    if not sep or not base or not quote:
        raise ValueError(f"symbol must be BASE-QUOTE, got {symbol!r}")
    return base, quote


def utc_day(ns: int) -> dt.date:
    """Return the UTC calendar day of a wall-clock time in ns since the epoch."""
    return dt.datetime.fromtimestamp(ns // _NS_PER_S, dt.UTC).date()


def fill_flows(
    symbol: str, side: Side, quantity: Decimal, price: Decimal, fee: Decimal = _ZERO, fee_asset: str = ""
) -> list[tuple[str, Decimal]]:
    """Return the (asset, signed change) a fill makes: base, quote, then the fee (if any)."""
    base, quote = split_symbol(symbol)
    sign = _ONE if side == "buy" else -_ONE
    with localcontext(EXACT):
        flows = [(base, sign * quantity), (quote, -sign * quantity * price)]
        if fee:
            flows.append((fee_asset, -fee))
    return flows


def median_mid(cache: PriceCache, symbol: str) -> Decimal | None:
    """Return the median of the fresh mids ((bid + ask) / 2) of `symbol` across venues, exactly."""
    with localcontext(EXACT):
        mids = sorted((e.quote.bid + e.quote.ask) / 2 for e in cache.fresh(symbol).values())
        if not mids:
            return None
        middle = len(mids) // 2
        return mids[middle] if len(mids) % 2 else (mids[middle - 1] + mids[middle]) / 2


def fresh_mids(cache: PriceCache, currency: str) -> MidSource:
    """Return asset → its fresh mid in `currency` (None when there is none).

    Direct: `median_mid` of `ASSET-<currency>`. Otherwise through the first cached `OTHER-ASSET`
    pair (by name) whose OTHER has a direct mid: mid(OTHER-currency) / mid(OTHER-ASSET), rounded
    half-even to 34 significant digits — so `BTC-USDT` and `BTC-USD` books price USD in USDT.
    """

    def mid(asset: str) -> Decimal | None:
        found = median_mid(cache, f"{asset}-{currency}")
        if found is not None:
            return found
        for symbol in sorted(cache.symbols()):
            other, quote = split_symbol(symbol)
            if quote != asset or other == currency:
                continue
            other_price = median_mid(cache, f"{other}-{currency}")
            pair = None if other_price is None else median_mid(cache, symbol)
            if other_price is not None and pair is not None:
                with localcontext(_CROSS):
                    return other_price / pair
        return None

    return mid


def _no_mids(asset: str) -> Decimal | None:
    return None


@dataclass(frozen=True, slots=True)
class Price:
    """An asset's value in the valuation currency; `stale` when it is not from a fresh mid."""

    value: Decimal
    stale: bool


@dataclass(frozen=True, slots=True)
class BookState:
    """Everything a PositionBook learned from its fills: what a pruned history carries forward."""

    net: Mapping[str, Mapping[str, Decimal]]  # asset → venue → net
    costs: Mapping[str, tuple[Decimal, Decimal]]  # asset → (open quantity, cost basis)
    last: Mapping[str, Decimal]  # asset → last known price
    realized: Mapping[dt.date, Decimal]  # UTC day → realized PnL
    pnl_unpriced: frozenset[str]


class _Cost:
    """One asset's open quantity and its signed cost basis in the valuation currency."""

    __slots__ = ("basis", "quantity")

    def __init__(self) -> None:
        self.quantity = _ZERO
        self.basis = _ZERO

    def trade(self, delta: Decimal, unit: Decimal) -> Decimal:
        """Apply a flow of `delta` units at `unit` each; return the PnL it realized."""
        held = self.quantity
        if held == 0 or (held > 0) == (delta > 0):
            self.quantity += delta
            self.basis += delta * unit
            return _ZERO
        closed = min(abs(delta), abs(held))
        if closed == abs(held):
            released = self.basis
        else:
            with localcontext(_SHARE):
                released = (self.basis * closed / abs(held)).quantize(_SHARE_QUANTUM)
        moved = closed if delta > 0 else -closed
        realized = -moved * unit - released
        self.quantity += moved
        self.basis -= released
        rest = delta - moved
        if rest:
            self.quantity = rest
            self.basis = rest * unit
        return realized


class PositionBook:
    """Net positions per asset and venue, their valuation, and realized PnL per UTC day."""

    def __init__(self, currency: str = "USDT", mids: MidSource = _no_mids) -> None:
        """Value assets in `currency`; `mids` gives an asset's fresh mid in it (see `fresh_mids`)."""
        if not currency:
            raise ValueError("the valuation currency must be non-empty")
        self.currency = currency
        self._mids = mids
        self._net: dict[str, dict[str, Decimal]] = {}  # asset → venue → net
        self._costs: dict[str, _Cost] = {}
        self._last: dict[str, Decimal] = {}
        self._realized: dict[dt.date, Decimal] = {}
        self._pnl_unpriced: set[str] = set()

    def apply(self, symbol: str, fill: Fill) -> Decimal:
        """Apply one fill of `symbol` to the positions and the PnL; return the PnL it realized."""
        base, quote = split_symbol(symbol)
        flows = fill_flows(symbol, fill.side, fill.quantity, fill.price, fill.fee, fill.fee_asset)
        with localcontext(EXACT):
            for asset, delta in flows:
                venues = self._net.setdefault(asset, {})
                venues[fill.venue] = venues.get(fill.venue, _ZERO) + delta
            if quote == self.currency:
                self._last[base] = fill.price
            quote_unit = self._unit(quote)
            units = {quote: quote_unit, base: None if quote_unit is None else fill.price * quote_unit}
            realized = sum((self._trade(a, d, units[a]) for a, d in flows[:2]), _ZERO)
            if fill.fee:
                unit = units[fill.fee_asset] if fill.fee_asset in units else self._unit(fill.fee_asset)
                realized += self._trade(fill.fee_asset, -fill.fee, unit)
                realized -= _ZERO if unit is None else fill.fee * unit
            day = utc_day(fill.ts_ns)
            self._realized[day] = self._realized.get(day, _ZERO) + realized
        return realized

    def state(self) -> BookState:
        """Return what the fills applied so far left in the book (see `carry_over`)."""
        return BookState(
            net={asset: dict(venues) for asset, venues in self._net.items()},
            costs={asset: (cost.quantity, cost.basis) for asset, cost in self._costs.items()},
            last=dict(self._last),
            realized=dict(self._realized),
            pnl_unpriced=frozenset(self._pnl_unpriced),
        )

    def carry_over(self, state: BookState) -> None:
        """Start a book that has applied no fill from `state`, as if it had applied those fills."""
        if self._net or self._realized:
            raise ValueError("a history is carried over into a book that has applied no fill yet")
        self._net = {asset: dict(venues) for asset, venues in state.net.items()}
        for asset, (quantity, basis) in state.costs.items():
            cost = self._costs.setdefault(asset, _Cost())
            cost.quantity, cost.basis = quantity, basis
        self._last.update(state.last)
        self._realized = dict(state.realized)
        self._pnl_unpriced = set(state.pnl_unpriced)

    def _unit(self, asset: str) -> Decimal | None:
        price = self.price(asset)
        return None if price is None else price.value

    def _trade(self, asset: str, delta: Decimal, unit: Decimal | None) -> Decimal:
        if asset == self.currency or not delta:
            return _ZERO
        if unit is None:
            self._pnl_unpriced.add(asset)
            return _ZERO
        return self._costs.setdefault(asset, _Cost()).trade(delta, unit)

    def price(self, asset: str) -> Price | None:
        """Return the asset's value in the valuation currency: fresh mid, else the last known (stale)."""
        if asset == self.currency:
            return Price(_ONE, stale=False)
        mid = self._mids(asset)
        if mid is not None:
            self._last[asset] = mid
            return Price(mid, stale=False)
        last = self._last.get(asset)
        return None if last is None else Price(last, stale=True)

    def net(self, asset: str, venue: str | None = None) -> Decimal:
        """Return the net position in `asset`: on `venue`, or summed across venues."""
        venues = self._net.get(asset, {})
        if venue is not None:
            return venues.get(venue, _ZERO)
        with localcontext(EXACT):
            return sum(venues.values(), _ZERO)

    def positions(self) -> dict[str, dict[str, Decimal]]:
        """Return asset → venue → net position, for every asset a fill ever moved."""
        return {asset: dict(venues) for asset, venues in sorted(self._net.items())}

    def gross_exposure(self, nets: Mapping[str, Decimal] | None = None) -> tuple[Decimal, list[str]]:
        """Return Σ |net| × price over assets other than the valuation currency, and the unpriced ones.

        `nets` overrides the total net of the assets it names (to value a position an order would make).
        """
        totals = {asset: self.net(asset) for asset in self._net} | dict(nets or {})
        gross, unpriced = _ZERO, []
        with localcontext(EXACT):
            for asset, net in sorted(totals.items()):
                if asset == self.currency or not net:
                    continue
                price = self.price(asset)
                if price is None:
                    unpriced.append(asset)
                else:
                    gross += abs(net) * price.value
        return gross, unpriced

    def realized_on(self, day: dt.date) -> Decimal:
        """Return the PnL realized on UTC `day`, in the valuation currency."""
        return self._realized.get(day, _ZERO)

    def snapshot(self, day: dt.date) -> dict[str, object]:
        """Return the positions, their values, the gross exposure and `day`'s realized PnL (for /status)."""
        assets: dict[str, object] = {}
        for asset, venues in self.positions().items():
            net = self.net(asset)
            price = self.price(asset)
            with localcontext(EXACT):
                value = None if price is None else decimal_text(net * price.value)
            assets[asset] = {
                "net": decimal_text(net),
                "venues": {venue: decimal_text(q) for venue, q in sorted(venues.items())},
                "price": None if price is None else decimal_text(price.value),
                "price_stale": None if price is None else price.stale,
                "value": value,
            }
        gross, unpriced = self.gross_exposure()
        return {
            "valuation_currency": self.currency,
            "positions": assets,
            "gross_exposure": decimal_text(gross),
            "unpriced": unpriced,
            "day": day.isoformat(),
            "realized_pnl_today": decimal_text(self.realized_on(day)),
            "pnl_unpriced": sorted(self._pnl_unpriced),
        }
