"""The carried history: what the ledger's pruned fills did to positions, paper balances and PnL.

When retention prunes old requests (`router.ledger.retention`), their fills are
folded into one record, so the rebuild at start (`LegRunner.restore_positions`)
gives the same net positions, paper balances and realized PnL per UTC day as if
they were still there — and a restart no longer replays the whole history.

The record holds the position book's state (`router.positions.BookState`: nets
per asset and venue, each asset's open quantity and cost basis, last prices,
realized PnL per day, assets whose PnL could not be priced) and each venue's net
balance change per asset. Balance changes are carried, not balances: paper
balances start from `[paper.balances]` and move by them, as they move by fills.

Folding applies the fills exactly as the rebuild does, with one difference: a
unit value a fill needs is never taken from a fresh mid of the moment (the book
is priced by the fills themselves), so the record is the same whenever the
prune runs. The valuation currency is part of the record: a rebuild in another
currency is refused (`CarryError`), since the carried PnL and cost bases cannot
be revalued.

    {"v": 1, "currency": "USDT", "fills": 30,
     "net": {"BTC": {"okx": "0.5"}}, "costs": {"BTC": ["0.5", "30000"]}, "last": {"BTC": "60000"},
     "realized": {"2026-12-07": "-1.25"}, "pnl_unpriced": [], "balances": {"okx": {"BTC": "0.5"}}}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext

import orjson

from connectors.types import decimal_text
from router.balances import fill_moves
from router.errors import RouterError
from router.execution import Fill
from router.ledger import Fold, LegIntent
from router.positions import EXACT, BookState, PositionBook

_VERSION = 1


class CarryError(RouterError):
    """The carried history cannot be read, or not in this configuration."""


@dataclass(frozen=True, slots=True)
class CarriedHistory:
    """What the pruned fills left: the position book's state and each venue's balance changes."""

    currency: str
    book: BookState
    balances: Mapping[str, Mapping[str, Decimal]]  # venue → asset → net change
    fills: int  # fills folded so far

    def encode(self) -> bytes:
        """Return the record as stored in the ledger's flags."""
        book = self.book
        return orjson.dumps(
            {
                "v": _VERSION,
                "currency": self.currency,
                "fills": self.fills,
                "net": _texts2(book.net),
                "costs": {a: [decimal_text(q), decimal_text(b)] for a, (q, b) in sorted(book.costs.items())},
                "last": _texts(book.last),
                "realized": {day.isoformat(): decimal_text(v) for day, v in sorted(book.realized.items())},
                "pnl_unpriced": sorted(book.pnl_unpriced),
                "balances": _texts2(self.balances),
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> CarriedHistory:
        """Read a stored record; anything unreadable is a CarryError (never silently dropped)."""
        try:
            doc = orjson.loads(raw)
            if doc.get("v") != _VERSION:
                raise CarryError(f"carried history version {doc.get('v')!r} is not {_VERSION}")
            book = BookState(
                net=_decimals2(doc["net"]),
                costs={a: (Decimal(q), Decimal(b)) for a, (q, b) in doc["costs"].items()},
                last=_decimals(doc["last"]),
                realized={dt.date.fromisoformat(d): Decimal(v) for d, v in doc["realized"].items()},
                pnl_unpriced=frozenset(str(a) for a in doc["pnl_unpriced"]),
            )
            return cls(str(doc["currency"]), book, _decimals2(doc["balances"]), int(doc["fills"]))
        except (
            orjson.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            InvalidOperation,
        ) as exc:
            raise CarryError(f"the ledger's carried history is unreadable: {exc!r}") from exc


def load_carried(raw: bytes | None, currency: str) -> CarriedHistory | None:
    """Return the stored record, refusing one valued in another currency than `currency`."""
    if raw is None:
        return None
    carried = CarriedHistory.decode(raw)
    if carried.currency != currency:
        raise CarryError(
            f"risk.valuation_currency is {currency}, but the ledger's pruned history is valued in "
            f"{carried.currency}: its PnL and cost bases cannot be revalued; set it back to "
            f"{carried.currency}"
        )
    return carried


def fold(currency: str) -> Fold:
    """Return the fold that adds pruned requests' settled legs to the record (`Ledger.prune_done`)."""

    def add(stored: bytes | None, legs: Sequence[tuple[bytes, LegIntent]]) -> bytes:
        carried = load_carried(stored, currency)
        book = PositionBook(currency)
        balances: dict[str, dict[str, Decimal]] = {}
        if carried is not None:
            book.carry_over(carried.book)
            balances = {venue: dict(moves) for venue, moves in carried.balances.items()}
        fills = 0
        for symbol, fill in settled_fills(legs):
            book.apply(symbol, fill)
            moves = balances.setdefault(fill.venue, {})
            with localcontext(EXACT):
                for asset, change in fill_moves(symbol, fill).items():
                    moves[asset] = moves.get(asset, Decimal(0)) + change
            fills += 1
        before = 0 if carried is None else carried.fills
        return CarriedHistory(currency, book.state(), balances, before + fills).encode()

    return add


def settled_fills(legs: Sequence[tuple[bytes, LegIntent]]) -> list[tuple[str, Fill]]:
    """Return (symbol, fill) of every fill the settled legs recorded, in their order."""
    fills: list[tuple[str, Fill]] = []
    for request, intent in legs:
        symbol = orjson.loads(request).get("symbol")
        if not isinstance(symbol, str) or intent.outcome is None:
            continue
        fills.extend((symbol, Fill.from_message(f)) for f in orjson.loads(intent.outcome)["fills"])
    return fills


def _texts(values: Mapping[str, Decimal]) -> dict[str, str]:
    return {key: decimal_text(value) for key, value in sorted(values.items())}


def _texts2(values: Mapping[str, Mapping[str, Decimal]]) -> dict[str, dict[str, str]]:
    return {key: _texts(inner) for key, inner in sorted(values.items())}


def _decimals(values: Mapping[str, str]) -> dict[str, Decimal]:
    return {str(key): Decimal(value) for key, value in values.items()}


def _decimals2(values: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, Decimal]]:
    return {str(key): _decimals(inner) for key, inner in values.items()}
