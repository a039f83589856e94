"""Canonical symbols (`BASE-QUOTE`, upper case) and the venue forms they map to.

Binance and Bybit write a pair with no separator (`BTCUSDT`). Mapping that form
back is exact only against a known set of symbols, so adapters build a
venue → canonical dict from their configured symbols (`concatenated_map`);
`split_concatenated` guesses by known quote assets and is for places without
such a list (for example, reading a venue's instrument list).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

_ASSET: Final = re.compile(r"[A-Z0-9]{1,20}")

# Longest first, so that `FDUSD` wins over `USD` and `USDT` over `USD`.
KNOWN_QUOTE_ASSETS: Final[tuple[str, ...]] = tuple(
    sorted(
        (
            "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDE", "DAI", "USD",
            "EUR", "GBP", "TRY", "BRL", "JPY", "AUD",
            "BTC", "ETH", "BNB",
        ),
        key=len,
        reverse=True,
    )
)  # fmt: skip


def validate_symbol(symbol: str) -> str:
    """Return `symbol` if it is canonical `BASE-QUOTE` upper case, else raise ValueError."""
    base, sep, quote = symbol.partition("-") if isinstance(symbol, str) else ("", "", "")
    if not sep or _ASSET.fullmatch(base) is None or _ASSET.fullmatch(quote) is None:
        raise ValueError(
            f"invalid symbol {symbol!r}: expected canonical BASE-QUOTE in upper case, e.g. 'BTC-USDT'"
        )
    return symbol


def split_symbol(symbol: str) -> tuple[str, str]:
    """Split a canonical symbol into (base, quote)."""
    base, _, quote = validate_symbol(symbol).partition("-")
    return base, quote


def join_symbol(base: str, quote: str) -> str:
    """Join base and quote assets into a canonical symbol."""
    return validate_symbol(f"{base}-{quote}")


def to_concatenated(symbol: str) -> str:
    """Return the separator-less venue form of a canonical symbol (`BTC-USDT` → `BTCUSDT`)."""
    base, quote = split_symbol(symbol)
    return base + quote


def split_concatenated(venue_symbol: str) -> tuple[str, str]:
    """Split a separator-less venue symbol by its known quote asset (`BTCUSDT` → (`BTC`, `USDT`))."""
    upper = venue_symbol.upper()
    for quote in KNOWN_QUOTE_ASSETS:
        base = upper[: -len(quote)]
        if upper.endswith(quote) and _ASSET.fullmatch(base) is not None:
            return base, quote
    raise ValueError(
        f"cannot split venue symbol {venue_symbol!r}: no known quote asset suffix "
        f"(known: {', '.join(KNOWN_QUOTE_ASSETS)})"
    )


def concatenated_map(symbols: Iterable[str]) -> dict[str, str]:
    """Map each symbol's separator-less venue form to its canonical form; raise ValueError on a clash."""
    mapping: dict[str, str] = {}
    for symbol in symbols:
        venue_symbol = to_concatenated(symbol)
        other = mapping.setdefault(venue_symbol, symbol)
        if other != symbol:
            raise ValueError(f"symbols {other!r} and {symbol!r} both map to venue symbol {venue_symbol!r}")
    return mapping
