"""How published and displayed figures are rounded: exact Decimal inside, a stated precision outside.

Every figure is computed exactly; only what goes into a message or onto a screen
is rounded, and always in the direction that does not flatter the user:

- **Prices** (VWAPs, expected and average prices, all-in scores): to
  `PRICE_EXTRA_PLACES` decimals beyond the venue's quoted precision, which is
  the most decimals among the book prices the figure comes from, trailing zeros
  ignored (a venue's prices are multiples of its tick, so this is its tick as
  its book shows it). A buy's price is rounded up, a sell's down. A price that
  is one book level's price is that price exactly.
- **Money** in the quote currency (net profit, fees, cash flows): to
  `MONEY_PLACES` (8) decimals; what the user receives or earns rounded down,
  what the user pays rounded up.
- **Basis points**: to 2 decimals; a spread or profit rounded down, a cost
  (slippage, what a preference cost) rounded up.
- **Quantities** are never rounded: they are never the result of a division
  (a request's quantity, sums of book sizes, a multiple of the books' size step).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from typing import Final

from connectors.types import Side

PRICE_EXTRA_PLACES: Final = 4
MONEY_PLACES: Final = 8
MONEY_STEP: Final = Decimal(1).scaleb(-MONEY_PLACES)
BPS_STEP: Final = Decimal("0.01")
_CONTEXT: Final = Context(prec=80)  # quantize never runs out of digits
_STEPS: Final = {places: Decimal(1).scaleb(-places) for places in range(0, 41)}


def quoted_places(prices: Iterable[Decimal]) -> int:
    """Return the most decimals among `prices` as written, trailing zeros ignored (0 for none)."""
    most = 0
    for price in prices:
        text = str(price)
        if "E" in text or "e" in text:  # exponent notation: its exponent once trailing zeros are gone
            exponent = price.normalize(_CONTEXT).as_tuple().exponent
            places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        else:
            dot = text.find(".")
            places = len(text[dot + 1 :].rstrip("0")) if dot >= 0 else 0
        most = max(most, places)
    return most


def price_step(places: int) -> Decimal:
    """Return the step a price quoted to `places` decimals is published to: `PRICE_EXTRA_PLACES` finer."""
    total = max(places, 0) + PRICE_EXTRA_PLACES
    step = _STEPS.get(total)
    return step if step is not None else Decimal(1).scaleb(-total)


def round_price(value: Decimal, step: Decimal, side: Side) -> Decimal:
    """Return `value` on `step`, against the taker: up for a buy, down for a sell."""
    rounding = ROUND_CEILING if side == "buy" else ROUND_FLOOR
    return value.quantize(step, rounding=rounding, context=_CONTEXT)


def publish_price(value: Decimal, prices: Iterable[Decimal], side: Side) -> Decimal:
    """Return a price computed from the book `prices` as published: `round_price` at their precision."""
    return round_price(value, price_step(quoted_places(prices)), side)


def money_down(value: Decimal) -> Decimal:
    """Return money the user receives or earns, rounded down to `MONEY_PLACES` decimals."""
    return value.quantize(MONEY_STEP, rounding=ROUND_FLOOR, context=_CONTEXT)


def money_up(value: Decimal) -> Decimal:
    """Return money the user pays (a fee), rounded up to `MONEY_PLACES` decimals."""
    return value.quantize(MONEY_STEP, rounding=ROUND_CEILING, context=_CONTEXT)


def bps_down(value: Decimal) -> Decimal:
    """Return a spread or profit in bps, rounded down to 2 decimals."""
    return value.quantize(BPS_STEP, rounding=ROUND_FLOOR, context=_CONTEXT)


def bps_up(value: Decimal) -> Decimal:
    """Return a cost in bps (slippage, a preference's cost), rounded up to 2 decimals."""
    return value.quantize(BPS_STEP, rounding=ROUND_CEILING, context=_CONTEXT)
