"""Who may trade what: the signature check of an order request and the user's entitlements.

`AccessPolicy.authenticate_order` runs before a request's id is claimed in the
ledger: a message that does not prove its user (missing, malformed or wrong
signature, unknown signer, or signed by someone else than its `user_id`) is
answered `rejected`/`unauthenticated` and sent to the DLQ, but never claims
the id — a forger who guesses a request_id cannot make the real request be
answered with the forgery's rejection.

`AccessPolicy.authorize` runs on an authenticated, claimed request: a symbol,
a kind or a named venue outside the user's `[users.<id>]` entitlements is
`rejected`/`forbidden`, naming what is not allowed. Venues a user is not
entitled to are simply not considered when the router chooses among venues.
With signatures required, a user without a `[users.<id>]` section has no key
and cannot trade.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from router.errors import RouterError
from router.request import ArbitrageRequest, Request
from router.signatures import Headers, KeyRing, Unauthenticated, verify_as

__all__ = ["AccessPolicy", "Entitlements", "Forbidden"]


class Forbidden(RouterError):
    """An authenticated request for something the user is not entitled to."""

    reject_code: ClassVar[str] = "forbidden"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Entitlements:
    """What one user may trade; None allows everything of that kind."""

    venues: frozenset[str] | None = None
    symbols: frozenset[str] | None = None
    kinds: frozenset[str] | None = None

    def check(self, request: Request) -> None:
        """Raise Forbidden naming the first thing `request` asks for that is not allowed."""
        if self.kinds is not None and request.kind not in self.kinds:
            raise Forbidden(
                f"{request.user_id} may not send {request.kind} requests (allowed: {_list(self.kinds)})"
            )
        if self.symbols is not None and request.symbol not in self.symbols:
            raise Forbidden(
                f"{request.user_id} may not trade {request.symbol} (allowed: {_list(self.symbols)})"
            )
        for venue in _named_venues(request):
            if not self.allows_venue(venue):
                raise Forbidden(f"{request.user_id} may not trade on {venue} (allowed: {_list(self.venues)})")

    def allows_venue(self, venue: str) -> bool:
        """Return whether the user may trade on `venue`."""
        return self.venues is None or venue in self.venues


def _named_venues(request: Request) -> tuple[str, ...]:
    if isinstance(request, ArbitrageRequest):
        return (request.buy_venue, request.sell_venue)
    return tuple(request.venues or ())


def _list(items: frozenset[str] | None) -> str:
    return ", ".join(sorted(items or ())) or "nothing"


_EVERYTHING = Entitlements()


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The signature requirement, the users' keys and their entitlements (from the config)."""

    signatures_required: bool = False
    users: KeyRing = field(default_factory=lambda: KeyRing(MappingProxyType({})))
    entitlements: Mapping[str, Entitlements] = field(default_factory=lambda: MappingProxyType({}))

    def authenticate_order(self, raw: bytes, headers: Headers, user_id: str | None) -> None:
        """Raise Unauthenticated unless signatures are off or `user_id` itself signed `raw` for orders."""
        if not self.signatures_required:
            return
        if user_id is None:
            raise Unauthenticated("the request has no readable user_id to check its signer against")
        verify_as("orders", raw, headers, self.users, user_id)

    def authorize(self, request: Request) -> None:
        """Raise Forbidden if `request` is outside its user's entitlements."""
        self.of(request.user_id).check(request)

    def of(self, user_id: str) -> Entitlements:
        """Return the entitlements of `user_id` (everything for a user the config does not restrict)."""
        return self.entitlements.get(user_id, _EVERYTHING)
