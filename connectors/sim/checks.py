"""Argument checks of the simulator's public API: bad settings and bad quotes get a clear `SimulatorError`."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Final

from connectors.sim.market import SimulatorError
from connectors.sim.protocol import VenueRules

_SYMBOL: Final = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}")


def check_settings(
    venues: Sequence[str],
    symbols: Sequence[str],
    ports: Mapping[str, int],
    rules: Mapping[str, VenueRules],
    known: Collection[str],
) -> None:
    """Refuse venues outside `known`, malformed or repeated symbols, and settings for unsimulated venues."""
    if isinstance(venues, str) or isinstance(symbols, str):
        raise SimulatorError("venues and symbols must be sequences of names, not one string")
    if not venues or any(v not in known for v in venues) or len(set(venues)) != len(venues):
        raise SimulatorError(f"venues must be distinct names from {sorted(known)}, got {list(venues)}")
    bad = [s for s in symbols if not isinstance(s, str) or not _SYMBOL.fullmatch(s)]
    if not symbols or bad or len(set(symbols)) != len(symbols):
        raise SimulatorError(f"symbols must be distinct canonical BASE-QUOTE names, got {list(symbols)}")
    for what, mapping in (("ports", ports), ("rules", rules)):
        if extra := set(mapping) - set(venues):
            raise SimulatorError(f"{what} given for venues that are not simulated: {sorted(extra)}")


def check_limits(
    *, send_queue_frames: int, shutdown_grace_s: float, book_levels: int, max_levels: int
) -> None:
    """Refuse an empty outbox, a negative grace period and a book depth outside 1..`max_levels`."""
    if send_queue_frames < 1 or shutdown_grace_s < 0:
        raise SimulatorError("send_queue_frames must be >= 1 and shutdown_grace_s >= 0")
    if not 1 <= book_levels <= max_levels:
        raise SimulatorError(f"book_levels must be within 1..{max_levels}, got {book_levels}")


def decimal_arg(name: str, value: Decimal | str) -> Decimal:
    """Return `value` as a finite, non-negative Decimal, or raise `SimulatorError` naming `name`."""
    if not isinstance(value, Decimal | str):
        raise SimulatorError(f"{name} must be a Decimal or a decimal string, got {value!r}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation as exc:
        raise SimulatorError(f"{name} must be a decimal number, got {value!r}") from exc
    if not number.is_finite() or number < 0:
        raise SimulatorError(f"{name} must be a finite, non-negative decimal, got {value!r}")
    return number
