"""BalanceBook: what each venue account holds, per asset, and what in-flight legs have reserved of it.

Exact Decimal throughout. For every venue the book *tracks* it keeps the
holdings it expects (`total`) and the reservations of legs not yet settled;
`available = total − reserved` is what a new leg may use. A venue the book does
not track is unlimited (paper mode without `[paper.balances]`): no funding check.

A leg's life in the book:

1. `reserve` before it is sent: what it may spend at most (`router.funding.leg_need`);
   refused with `InsufficientBalance` when the venue's available amount is short;
2. `settle` once its outcome is known: the reservation is released and each fill
   moves the holdings — a buy gains `quantity` base and spends `price × quantity`
   quote, a sell the reverse, and the fee is taken from its own asset (quote,
   base or another one such as BNB).

Live, the venue is the truth: `reconcile` compares what a venue reports with
what the book expects, returns each difference beyond the tolerance as a
`Drift` (the caller reports it) and adopts the venue's figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from connectors.types import BPS, decimal_text
from router.errors import RouterError
from router.execution import Fill
from router.funding import symbol_assets

_ZERO = Decimal(0)

LegKey = tuple[str, int]  # (request_id, leg)


class InsufficientBalance(RouterError):
    """A leg the venue's available balance cannot pay for; nothing was sent."""

    reject_code: ClassVar[str] = "insufficient_balance"

    def __init__(self, venue: str, asset: str, needed: Decimal, available: Decimal) -> None:
        self.venue, self.asset, self.needed, self.available = venue, asset, needed, available
        self.message = (
            f"insufficient {asset} on {venue}: the leg needs {decimal_text(needed)}, "
            f"{decimal_text(available)} available"
        )
        super().__init__(self.message)


@dataclass(frozen=True, slots=True)
class Holding:
    """One asset of one venue: what the book expects it holds and what in-flight legs reserved."""

    total: Decimal
    reserved: Decimal

    @property
    def available(self) -> Decimal:
        """Return what a new leg may use: total − reserved."""
        return self.total - self.reserved

    def as_status(self) -> dict[str, str]:
        """Return the /status entry: decimals as strings."""
        return {
            "total": decimal_text(self.total),
            "reserved": decimal_text(self.reserved),
            "available": decimal_text(self.available),
        }


@dataclass(frozen=True, slots=True)
class Drift:
    """A venue's reported balance that differs from the book's expected one beyond the tolerance."""

    venue: str
    asset: str
    expected: Decimal
    observed: Decimal
    at_ns: int

    def as_status(self) -> dict[str, object]:
        """Return the /status entry."""
        return {
            "venue": self.venue,
            "asset": self.asset,
            "expected": decimal_text(self.expected),
            "observed": decimal_text(self.observed),
            "at_ns": self.at_ns,
        }


@dataclass(frozen=True, slots=True)
class _Reservation:
    venue: str
    asset: str
    amount: Decimal


class BalanceBook:
    """Holdings and reservations per tracked venue and asset."""

    def __init__(self, balances: Mapping[str, Mapping[str, Decimal]], *, synced: bool = True) -> None:
        """Track every venue of `balances` from those holdings; `synced=False`: not read from it yet."""
        for venue, assets in balances.items():
            for asset, amount in assets.items():
                if not amount.is_finite():
                    raise ValueError(f"{venue} {asset}: balance must be finite, got {amount}")
        self._totals = {venue: dict(assets) for venue, assets in balances.items()}
        self._synced = dict.fromkeys(balances, synced)
        self._reservations: dict[LegKey, _Reservation] = {}
        self._versions: Counter[str] = Counter()

    def tracks(self, venue: str) -> bool:
        """Tell whether `venue`'s balances are tracked (else it is unlimited)."""
        return venue in self._totals

    def synced(self, venue: str) -> bool:
        """Tell whether a tracked venue's balances were read from it (always true on paper)."""
        return self._synced.get(venue, False)

    def reserved(self, venue: str, asset: str) -> Decimal:
        """Return what in-flight legs reserved of `asset` on `venue`."""
        held = (r.amount for r in self._reservations.values() if r.venue == venue and r.asset == asset)
        return sum(held, _ZERO)

    def available(self, venue: str, asset: str) -> Decimal | None:
        """Return what a new leg may use of `asset` on `venue`; None when the venue is not tracked."""
        totals = self._totals.get(venue)
        if totals is None:
            return None
        return totals.get(asset, _ZERO) - self.reserved(venue, asset)

    def reserve(self, key: LegKey, venue: str, asset: str, amount: Decimal) -> None:
        """Hold `amount` of `asset` on `venue` for leg `key`; raise InsufficientBalance when short."""
        if key in self._reservations:
            raise ValueError(f"leg {key} already holds a reservation")
        available = self.available(venue, asset)
        if available is None:
            return
        if amount > available:
            raise InsufficientBalance(venue, asset, amount, available)
        self._reservations[key] = _Reservation(venue, asset, amount)
        self._versions[venue] += 1

    def release(self, key: LegKey) -> None:
        """Drop leg `key`'s reservation (if it holds one)."""
        reservation = self._reservations.pop(key, None)
        if reservation is not None:
            self._versions[reservation.venue] += 1

    def settle(self, key: LegKey, symbol: str, fills: Iterable[Fill]) -> None:
        """Release leg `key`'s reservation and move the holdings by its fills."""
        self.release(key)
        for fill in fills:
            self.apply_fill(symbol, fill)

    def apply_fill(self, symbol: str, fill: Fill) -> None:
        """Move `fill.venue`'s holdings by one fill of `symbol` (no-op for an untracked venue)."""
        self.apply_moves(fill.venue, fill_moves(symbol, fill))

    def apply_moves(self, venue: str, moves: Mapping[str, Decimal]) -> None:
        """Move `venue`'s holdings by `moves` (asset → change; no-op for an untracked venue)."""
        totals = self._totals.get(venue)
        if totals is None:
            return
        for asset, change in moves.items():
            totals[asset] = totals.get(asset, _ZERO) + change
        self._versions[venue] += 1

    def busy(self, venue: str) -> bool:
        """Tell whether a leg on `venue` is in flight (its holdings are about to move)."""
        return any(r.venue == venue for r in self._reservations.values())

    def version(self, venue: str) -> int:
        """Return a number that changes whenever `venue`'s holdings or reservations change."""
        return self._versions[venue]

    def reconcile(
        self, venue: str, observed: Mapping[str, Decimal], tolerance_bps: Decimal, *, now_ns: int
    ) -> list[Drift]:
        """Adopt the venue's reported holdings; return each asset that differed beyond the tolerance.

        An asset differs when |observed − expected| > tolerance_bps / 10⁴ × max(|observed|, |expected|),
        so dust appearing where nothing was expected is a drift too. Only the assets of `observed`
        are compared and adopted (pass 0 for a watched asset the venue does not list). The first
        read of a venue (`synced` false) sets its holdings without comparing.
        """
        totals = self._totals.setdefault(venue, {})
        drifts = []
        if self._synced.get(venue, False):
            for asset in sorted(observed):
                expected, seen = totals.get(asset, _ZERO), observed.get(asset, _ZERO)
                if abs(seen - expected) > tolerance_bps / BPS * max(abs(seen), abs(expected)):
                    drifts.append(Drift(venue, asset, expected, seen, now_ns))
        totals.update(observed)
        self._synced[venue] = True
        self._versions[venue] += 1
        return drifts

    def snapshot(self) -> dict[str, dict[str, Holding]]:
        """Return every tracked venue's holdings by asset, reservations included."""
        return {
            venue: {
                asset: Holding(totals.get(asset, _ZERO), self.reserved(venue, asset))
                for asset in sorted(
                    {*totals, *(r.asset for r in self._reservations.values() if r.venue == venue)}
                )
            }
            for venue, totals in sorted(self._totals.items())
        }

    def as_status(self) -> dict[str, object]:
        """Return the /status view: per tracked venue, whether it was read and each asset's figures."""
        return {
            venue: {
                "synced": self.synced(venue),
                "assets": {asset: holding.as_status() for asset, holding in assets.items()},
            }
            for venue, assets in self.snapshot().items()
        }


def fill_moves(symbol: str, fill: Fill) -> dict[str, Decimal]:
    """Return how one fill of `symbol` moves its venue's holdings: asset → change."""
    base, quote = symbol_assets(symbol)
    sign = 1 if fill.side == "buy" else -1
    moves = {base: sign * fill.quantity, quote: -sign * fill.price * fill.quantity}
    moves[fill.fee_asset] = moves.get(fill.fee_asset, _ZERO) - fill.fee
    return moves
