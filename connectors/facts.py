"""What the config needs to know about a venue, declared once in the venue's own folder.

Each `connectors/<venue>/facts.py` holds one `VenueFacts`; the registry line
(`connectors.registry.VENUES`) points at it, and the daemon's `[venues.<id>]`
defaults, the adapters' default endpoints and the trading clients' production
URLs all read it. No endpoint or tier-0 fee is written down anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from connectors.trading import ClientIdStyle


@dataclass(frozen=True, slots=True)
class Testnet:
    """Where `[venues.<id>] testnet = true` points a venue: market data and trading."""

    ws_url: str
    rest_url: str
    trade_url: str


@dataclass(frozen=True, slots=True)
class VenueFacts:
    """A venue's production endpoints, tier-0 fees, testnet (or why none), client ids and tiers.

    Exactly one of `testnet` and `no_testnet` is given: the testnet's endpoints, or
    the reason `testnet = true` is refused. `tiers` lists the account tiers whose
    documented limits the trading client applies (`[venues.<id>] tier`), the default first;
    empty for a venue that reads its limits itself.
    """

    venue: str
    ws_url: str  # market data
    rest_url: str  # public REST (book snapshots) and, by default, orders
    taker_fee_bps: Decimal  # tier 0; the live account's own fee replaces it at connect
    maker_fee_bps: Decimal
    client_id_style: ClientIdStyle
    testnet: Testnet | None = None
    no_testnet: str = ""
    tiers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.testnet is None) == (not self.no_testnet):
            raise ValueError(
                f"{self.venue}: give the testnet's endpoints or the reason it has none, not both"
            )
        for name in ("ws_url", "rest_url"):
            if not getattr(self, name).startswith(("wss://", "https://")):
                raise ValueError(f"{self.venue}: {name} must be a production TLS endpoint")
        if self.taker_fee_bps < 0 or self.maker_fee_bps < 0:
            raise ValueError(f"{self.venue}: fees are never negative")

    @property
    def default_tier(self) -> str | None:
        """Return the tier an account is assumed to have when the config names none (None: no tiers)."""
        return self.tiers[0] if self.tiers else None
