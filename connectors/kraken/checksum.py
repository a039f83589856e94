"""Kraken WebSocket v2 book checksum: unsigned CRC32 of the top 10 levels at the pair's precision.

The documented rule: take the best 10 asks (low to high), then the best 10
bids (high to low); write each price and quantity with the pair's fixed
number of decimals, remove the `.`, strip leading zeros, and concatenate price
then quantity per level, asks first. The CRC32 of that text (unsigned) is the
`checksum` of a `book` message. Formatting the numbers any other way (floats,
shortest repr) gives a different value, which is why prices stay Decimal.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from connectors.types import Level

CHECKSUM_LEVELS: Final = 10


def level_text(value: Decimal, decimals: int) -> str:
    """Return `value` written with `decimals` places, without the point and leading zeros."""
    return format(value, f".{decimals}f").replace(".", "").lstrip("0")


def check_string(
    bids: Sequence[Level], asks: Sequence[Level], *, price_decimals: int, qty_decimals: int
) -> str:
    """Return the text Kraken checksums: the top 10 asks, then the top 10 bids, best first."""
    return "".join(
        level_text(price, price_decimals) + level_text(qty, qty_decimals)
        for side in (asks, bids)
        for price, qty in side[:CHECKSUM_LEVELS]
    )


def book_checksum(
    bids: Sequence[Level], asks: Sequence[Level], *, price_decimals: int, qty_decimals: int
) -> int:
    """Return the unsigned CRC32 Kraken sends for a book whose sides are given best first."""
    text = check_string(bids, asks, price_decimals=price_decimals, qty_decimals=qty_decimals)
    return zlib.crc32(text.encode())
