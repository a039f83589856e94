"""OKX order-book checksum: signed CRC32 of the top 25 levels, interleaved bid then ask.

OKX retired the field on 23 Jun 2026 (`checksum` is now always 0), but a
non-zero value is still verified, by the documented rule: take the first 25
bids and asks, build `bid1px:bid1sz:ask1px:ask1sz:bid2px:...` (a side that has
run out is skipped), with prices and sizes written exactly as received, and
take the CRC32 as a signed 32-bit integer.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from connectors.types import Level

CHECKSUM_LEVELS: Final = 25

TextLevel = tuple[str, str]


def check_string(bids: Sequence[TextLevel], asks: Sequence[TextLevel]) -> str:
    """Return the documented check string of the best 25 levels a side, best first."""
    parts: list[str] = []
    for index in range(CHECKSUM_LEVELS):
        if index < len(bids):
            parts.extend(bids[index])
        if index < len(asks):
            parts.extend(asks[index])
    return ":".join(parts)


def signed_crc32(text: str) -> int:
    """Return the CRC32 of `text` (UTF-8) as a signed 32-bit integer, as OKX sends it."""
    crc = zlib.crc32(text.encode())
    return crc - 2**32 if crc >= 2**31 else crc


def decimal_text(value: Decimal) -> str:
    """Return a parsed OKX decimal in the form it arrived in (plain notation, zeros kept)."""
    # format "f" never switches to exponent notation and keeps the digits Decimal kept.
    return format(value, "f")


def book_checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """Return the OKX checksum of a book given as Decimal levels, best first."""
    return signed_crc32(
        check_string(
            [(decimal_text(price), decimal_text(qty)) for price, qty in bids[:CHECKSUM_LEVELS]],
            [(decimal_text(price), decimal_text(qty)) for price, qty in asks[:CHECKSUM_LEVELS]],
        )
    )
