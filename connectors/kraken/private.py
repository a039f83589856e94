"""The Kraken spot REST request path: signed, throttled to the documented budgets, every answer classified.

One `KrakenRest` per API key (two in one process would interleave their
nonces). Every private request is form-encoded with a fresh nonce and signed
(`connectors.kraken.signing`), and at most one is in flight at a time: Kraken
refuses a nonce below the last one it accepted, and two concurrent requests
can arrive in either order, so a later nonce overtaking an earlier one would
get the earlier one refused. A request waits for its turn at most its
`max_wait_s` (RateLimited, unsent, after that); an order's `deadline` is
computed when it is signed, so time spent waiting never shortens it. Nothing here is
ever sent twice: a refusal, a lost answer or a throttle is raised to the
caller (`connectors.kraken.trading_errors`).

Kraken sends no rate-limit headers on REST, so the budgets are the documented
ones (https://docs.kraken.com/api/docs/guides/spot-rest-ratelimits and
.../spot-ratelimits), held back at `Throttle.headroom` of their capacity:

| tier         | REST counter (max, decay/s) | trading counter per pair (max, decay/s) |
|--------------|-----------------------------|-----------------------------------------|
| starter      | 15, 0.33                    | 60, 1                                   |
| intermediate | 20, 0.5                     | 125, 2.34                               |
| pro          | 20, 1                       | 180, 3.75                               |

A REST call costs 1, a ledger or trade-history call 2 (`ClosedOrders` is
counted as history too, to be safe); AddOrder costs 1 and CancelOrder up to 8
(an order younger than 5 s) on the pair's trading counter, not on the REST one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NoReturn
from urllib.parse import urlencode

import structlog

from connectors.errors import OutcomeUnknown, ParseError, RateLimited, VenueError, VenueRejected
from connectors.kraken.payloads import decode
from connectors.kraken.signing import KrakenCredentials, NonceSource, sign
from connectors.kraken.trading_errors import Refusal, classify, errors_of, from_http_status
from connectors.rest import RestResponse, RestSession, Throttle, VenueClock, retry_after_s

log = structlog.get_logger(__name__)

VENUE: Final = "kraken"
REST_BUDGET: Final = "rest"
PUBLIC_BUDGET: Final = "public"
_FORM: Final = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class Tier:
    """The documented counters of one Kraken verification tier."""

    rest_capacity: float
    rest_decay_per_s: float
    order_capacity: float
    order_decay_per_s: float


TIERS: Final = {
    "starter": Tier(15, 0.33, 60, 1.0),
    "intermediate": Tier(20, 0.5, 125, 2.34),
    "pro": Tier(20, 1.0, 180, 3.75),
}


def rfc3339_ms(epoch_ms: int) -> str:
    """Return an RFC 3339 UTC time with milliseconds (`2026-12-07T21:30:00.123Z`)."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class KrakenRest:
    """Signed, throttled Kraken REST requests on one RestSession; never re-sends anything."""

    def __init__(
        self,
        session: RestSession,
        credentials: KrakenCredentials | None,
        *,
        tier: str | Tier,
        clock: VenueClock,
        throttle: Throttle,
        nonces: NonceSource | None = None,
    ) -> None:
        if isinstance(tier, str) and tier not in TIERS:
            raise ValueError(f"kraken tier must be one of {', '.join(TIERS)}, got {tier!r}")
        self.session = session
        self.tier = TIERS[tier] if isinstance(tier, str) else tier
        self.clock = clock
        self.throttle = throttle
        self._credentials = credentials
        self._nonces = nonces or NonceSource()
        self._one_at_a_time = asyncio.Lock()
        self._pair_budgets: set[str] = set()
        self._pair_hold_until: dict[str, float] = {}
        throttle.budget(REST_BUDGET, self.tier.rest_capacity, self.tier.rest_decay_per_s)
        throttle.budget(PUBLIC_BUDGET, 2, 1.0)  # public endpoints: about one call a second per IP

    def __repr__(self) -> str:
        return f"KrakenRest(url={self.session.base_url!r}, signed={self._credentials is not None})"

    @property
    def signed(self) -> bool:
        """Tell whether requests can be signed (credentials were given)."""
        return self._credentials is not None

    async def public(self, path: str, query: str = "", *, action: str, max_wait_s: float) -> Any:
        """GET a public endpoint (`/0/public/...`) and return its `result`."""
        await self.throttle.acquire(PUBLIC_BUDGET, max_wait_s=max_wait_s)
        response = await self.session.request("GET", path, query=query, action=action)
        return self._result(response, action=action, may_execute=False, pair=None)

    async def private(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        action: str,
        max_wait_s: float,
        cost: float = 1.0,
        pair: str | None = None,
        may_execute: bool = False,
        deadline_ms: int | None = None,
    ) -> Any:
        """POST a signed request to `/0/private/...` and return its `result`.

        With `pair` the request is an order action and costs `cost` on that pair's
        trading counter; otherwise `cost` on the REST counter. With `deadline_ms`
        it carries `deadline` = the venue's time at signing + `deadline_ms`.
        """
        credentials = self._credentials
        if credentials is None:
            raise VenueError(f"kraken {action}: no API credentials configured")
        if pair is None:
            await self.throttle.acquire(REST_BUDGET, cost, max_wait_s=max_wait_s)
        else:
            await self._hold_for_pair(pair, action, max_wait_s)
            await self.throttle.acquire(self._pair_budget(pair), cost, max_wait_s=max_wait_s)
        await self._take_turn(action, max_wait_s)
        try:
            fields = dict(params)
            if deadline_ms is not None:
                fields["deadline"] = rfc3339_ms(self.clock.now_ms() + deadline_ms)
            nonce = str(self._nonces.next())
            body = urlencode({"nonce": nonce, **fields})
            headers = _FORM | {"API-Key": credentials.api_key}
            headers["API-Sign"] = sign(credentials.api_secret, path, nonce, body)
            response = await self.session.request(
                "POST", path, body=body.encode(), headers=headers, action=action, may_execute=may_execute
            )
        finally:
            self._one_at_a_time.release()
        return self._result(response, action=action, may_execute=may_execute, pair=pair)

    async def _take_turn(self, action: str, max_wait_s: float) -> None:
        """Wait until no other private request is in flight, at most `max_wait_s`; RateLimited after."""
        try:
            async with asyncio.timeout(max_wait_s):
                await self._one_at_a_time.acquire()
        except TimeoutError:
            raise RateLimited(
                f"kraken {action}: another private request was in flight for over {max_wait_s:g} s; not sent",
                0.0,
            ) from None

    def _pair_budget(self, pair: str) -> str:
        name = f"orders:{pair}"
        if name not in self._pair_budgets:
            self.throttle.budget(name, self.tier.order_capacity, self.tier.order_decay_per_s)
            self._pair_budgets.add(name)
        return name

    async def _hold_for_pair(self, pair: str, action: str, max_wait_s: float) -> None:
        wait = self._pair_hold_until.get(pair, 0.0) - self.throttle.clock()
        if wait <= 0:
            return
        if wait > max_wait_s:
            raise RateLimited(
                f"kraken {action}: {pair} orders are rate limited for another {wait:.3f} s; not sent", wait
            )
        await self.throttle.sleep(wait)

    def _result(self, response: RestResponse, *, action: str, may_execute: bool, pair: str | None) -> Any:
        status = response.status
        try:
            payload = decode(response.body)
        except ParseError:
            payload = None
        errors = errors_of(payload)
        if status != 200 and not errors:
            refusal = from_http_status(
                status, retry_after_s(response.headers), action=action, may_execute=may_execute
            )
            if refusal is None:
                refusal = Refusal(VenueRejected(f"HTTP {status}", "no Kraken error", status, venue=VENUE))
            self._refuse(refusal, action, pair)
        if errors:
            self._refuse(self._classify(errors, status, action, may_execute), action, pair)
        if not isinstance(payload, dict) or "result" not in payload:
            what = f"HTTP {status} answer without a result"
            if may_execute:
                raise OutcomeUnknown(f"kraken {action}: {what}; execution status unknown")
            raise ParseError(f"kraken {action}: {what}")
        return payload["result"]

    def _classify(self, errors: list[str], status: int, action: str, may_execute: bool) -> Refusal:
        tier = self.tier
        return classify(
            errors,
            action=action,
            may_execute=may_execute,
            status=status,
            now_s=self.clock.now_ms() / 1000,
            rest_decay_s=tier.rest_capacity / tier.rest_decay_per_s,
            order_decay_s=tier.order_capacity / tier.order_decay_per_s,
        )

    def _refuse(self, refusal: Refusal, action: str, pair: str | None) -> NoReturn:
        reason = type(refusal.error).__name__
        if refusal.ban_s is not None:
            self.throttle.ban(refusal.ban_s, reason="lockout")
        if refusal.hold_all_s is not None:
            self.throttle.back_off(refusal.hold_all_s, reason="throttled")
        if refusal.hold_pair_s is not None and pair is not None:
            until = self.throttle.clock() + refusal.hold_pair_s
            self._pair_hold_until[pair] = max(self._pair_hold_until.get(pair, 0.0), until)
        log.info("kraken_request_refused", venue=VENUE, action=action, kind=reason, error=str(refusal.error))
        raise refusal.error


async def measure_clock(clock: VenueClock, rest: KrakenRest, *, reason: str, max_wait_s: float) -> float:
    """Measure the offset to Kraken's clock from `GET /0/public/Time` (whole seconds: midpoint +0.5 s)."""

    async def server_ms() -> float:
        result = await rest.public("/0/public/Time", action="server time", max_wait_s=max_wait_s)
        unixtime = result.get("unixtime") if isinstance(result, dict) else None
        if isinstance(unixtime, bool) or not isinstance(unixtime, int):
            raise ParseError(f"kraken Time: 'unixtime' must be an integer, got {unixtime!r}")
        return (unixtime + 0.5) * 1000  # the second Kraken reports began up to 1 s ago

    return await clock.sync(server_ms, reason=reason)
