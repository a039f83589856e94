"""Which arbitrage opportunities are open, for arbitrage requests that name one (`opportunity_id`).

An arbitrage request with an `opportunity_id` is executed only while that opportunity is open;
otherwise it is answered `rejected` with `reject_code` `opportunity_closed`, and nothing is sent.
An opportunity is open for a request when all of these hold:

1. an `opened` or `updated` event with that id has been seen (from the detector of the same
   process, or read from the opportunities topic), and no `closed` event with that id since;
2. now (the router's wall clock) is before the `expires_ns` of the latest opened/updated event
   seen: when the older of the quotes it was computed on becomes too old to act on. (The detector
   publishes `updated` only when a price or the size moves, so an opportunity that stays put is
   not acted on past the expiry of its last event; routers and detectors on different hosts
   need synchronized clocks for this rule, as for every `*_ns` time.)
3. the request's symbol, buy venue and sell venue are that opportunity's. The id names one trade:
   a request for another trade under it is not acting on an open opportunity, so it is answered
   `opportunity_closed` too (its message says what differs), never `invalid_request` — the
   verdict must not depend on whether the router still remembers a closed id.

The request's quantity is not compared with the opportunity's, and being open executes nothing
by itself: both legs are still planned on the current books and must still pay after fees
(`router.arbitrage`). A request without an `opportunity_id` is judged on the books alone.

The router sees opportunities through the `OpenOpportunities` protocol: `DetectorOpportunities`
reads the detector of the same process; the daemon feeds an `OpportunityBook` from the
opportunities topic when the detector runs elsewhere (`daemon.opportunities`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from router.detector import ArbitrageDetector
from router.request import ArbitrageRequest

_PURGE_EVERY_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class OpenOpportunity:
    """What the router needs of an open opportunity's latest `opened`/`updated` event."""

    id: str
    symbol: str
    buy_venue: str
    sell_venue: str
    expires_ns: int


class OpenOpportunities(Protocol):
    """Where the router learns which opportunities are open."""

    async def find(self, opportunity_id: str) -> OpenOpportunity | None:
        """Return the latest opened/updated event of `opportunity_id`, or None if closed or never seen."""
        ...


async def check_open(
    opportunities: OpenOpportunities | None, request: ArbitrageRequest, now_ns: int
) -> str | None:
    """Return why `request` may not act on the opportunity it names, or None (also when it names none)."""
    if request.opportunity_id is None:
        return None
    if opportunities is None:
        return (
            f"this router follows no opportunities: it cannot tell whether {request.opportunity_id} is open"
        )
    found = await opportunities.find(request.opportunity_id)
    trade = (request.symbol, request.buy_venue, request.sell_venue)
    return not_open(found, request.opportunity_id, trade, now_ns)


def not_open(
    found: OpenOpportunity | None,
    opportunity_id: str,
    trade: tuple[str, str, str],
    now_ns: int,
) -> str | None:
    """Return why `trade` (symbol, buy venue, sell venue) cannot act on `opportunity_id` now, or None."""
    if found is None:
        return f"opportunity {opportunity_id} is not open: it closed, or this router never saw it open"
    if now_ns >= found.expires_ns:
        return (
            f"opportunity {opportunity_id} expired at {found.expires_ns} (now {now_ns}): its older quote "
            "is too old to act on"
        )
    named = (found.symbol, found.buy_venue, found.sell_venue)
    if trade != named:
        return (
            f"opportunity {opportunity_id} is {_trade(named)}, and this request is {_trade(trade)}; "
            "it acts on no open opportunity"
        )
    return None


def _trade(trade: tuple[str, str, str]) -> str:
    symbol, buy, sell = trade
    return f"{symbol} bought on {buy} and sold on {sell}"


class DetectorOpportunities:
    """The open opportunities of a detector in the same process."""

    def __init__(self, detector: ArbitrageDetector) -> None:
        self.detector = detector

    async def find(self, opportunity_id: str) -> OpenOpportunity | None:
        """Return the detector's latest event of `opportunity_id` while the detector holds it open."""
        for event in self.detector.open_opportunities():
            if event.id == opportunity_id:
                return OpenOpportunity(
                    event.id, event.symbol, event.buy_venue, event.sell_venue, event.expires_ns
                )
        return None


class InvalidOpportunity(ValueError):
    """An opportunity message lacks a field the router needs, or has one of the wrong type."""


class OpportunityBook:
    """The open opportunities, as the events read from the opportunities topic say.

    `opened`/`updated` store the event, `closed` forgets it; events past their `expires_ns` are
    dropped now and then, so the book holds only what can still be open.
    """

    def __init__(self) -> None:
        self._open: dict[str, OpenOpportunity] = {}
        self._next_purge_ns = 0

    def __len__(self) -> int:
        return len(self._open)

    def get(self, opportunity_id: str) -> OpenOpportunity | None:
        """Return the latest opened/updated event of `opportunity_id` unless a closed one followed."""
        return self._open.get(opportunity_id)

    def apply(self, message: object, now_ns: int) -> None:
        """Apply one Opportunity message; raise InvalidOpportunity (nothing applied) if it is unusable."""
        event, seen = _decode(message)
        if event == "closed":
            self._open.pop(seen.id, None)
        else:
            self._open[seen.id] = seen
        if now_ns >= self._next_purge_ns:
            self.purge(now_ns)
            self._next_purge_ns = now_ns + _PURGE_EVERY_NS

    def purge(self, now_ns: int) -> int:
        """Forget every opportunity past its `expires_ns`; return how many."""
        expired = [key for key, seen in self._open.items() if now_ns >= seen.expires_ns]
        for key in expired:
            del self._open[key]
        return len(expired)


def _decode(message: object) -> tuple[str, OpenOpportunity]:
    if not isinstance(message, Mapping):
        raise InvalidOpportunity("an opportunity message must be a JSON object")
    if message.get("v") != 1:
        raise InvalidOpportunity(f"v must be 1, got {message.get('v')!r}")
    event = message.get("event")
    if event not in ("opened", "updated", "closed"):
        raise InvalidOpportunity(f'event must be "opened", "updated" or "closed", got {event!r}')
    texts = {}
    for name in ("id", "symbol", "buy_venue", "sell_venue"):
        value = message.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidOpportunity(f"{name} must be a non-empty string, got {value!r}")
        texts[name] = value
    expires_ns = message.get("expires_ns")
    if type(expires_ns) is not int:
        raise InvalidOpportunity(f"expires_ns must be an integer, got {expires_ns!r}")
    return str(event), OpenOpportunity(
        texts["id"], texts["symbol"], texts["buy_venue"], texts["sell_venue"], expires_ns
    )
