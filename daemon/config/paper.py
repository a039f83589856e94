"""`[paper]`: paper trading's accounts — `[paper.balances.<venue>]`, what each venue starts with.

    [paper.balances.binance]
    USDT = "100000"
    BTC = "2"

Amounts are decimals ≥ 0 (TOML numbers or strings); asset codes are letters and
digits, upper-cased (an environment override arrives lower-cased). Without any
`[paper.balances]` table paper mode has no funding check: paper accounts are
unlimited, as before balances existed, because a default amount would be an
invented figure that silently refuses (or allows) orders nobody sized. Once one
venue has a table, every tradable venue must have one (the router refuses to
start otherwise, `daemon.routing`): a venue left out would trade without limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from connectors.types import VENUE_IDS
from daemon.config.table import Table, show

ASSET_RE: Final = re.compile(r"[A-Za-z0-9]{1,20}")
_ZERO: Final = Decimal(0)


def no_balances() -> Mapping[str, Mapping[str, Decimal]]:
    """Return the balances of a config without `[paper.balances]`: none (unlimited paper accounts)."""
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PaperConfig:
    """`[paper]`: the accounts paper trading starts from; none configured = no funding check."""

    balances: Mapping[str, Mapping[str, Decimal]] = field(default_factory=no_balances)


def read_paper(t: Table) -> PaperConfig:
    """Validate the `[paper]` table."""
    tables = t.table("balances")
    balances: dict[str, Mapping[str, Decimal]] = {}
    for venue in tables.names():
        if venue not in VENUE_IDS:
            raise tables.error(venue, f"unknown venue; known venues: {', '.join(VENUE_IDS)}")
        balances[venue] = _assets(tables.table(venue))
    tables.finish()
    t.finish()
    return PaperConfig(balances=MappingProxyType(balances))


def _assets(t: Table) -> Mapping[str, Decimal]:
    assets: dict[str, Decimal] = {}
    for name in t.names():
        if not ASSET_RE.fullmatch(name):
            raise t.error(name, f'must be an asset code like "USDT" (letters and digits), got {show(name)}')
        if name.upper() in assets:
            raise t.error(name, f"names the asset {name.upper()} twice")
        amount = t.optional_decimal(name, minimum=_ZERO, strict=False)
        if amount is None:
            raise t.error(name, "must be a finite decimal number ≥ 0 (TOML number or string)")
        assets[name.upper()] = amount
    t.finish()
    return MappingProxyType(assets)
