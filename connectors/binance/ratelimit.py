"""Binance REST rate limits, driven by what the server reports.

Binance counts request weight and orders per IP in fixed windows
(`exchangeInfo.rateLimits`: REQUEST_WEIGHT 6000 per minute, ORDERS 100 per
10 s and 200000 per day, RAW_REQUESTS 61000 per 5 minutes) and reports the
running totals in every answer (`X-MBX-USED-WEIGHT-1M`,
`X-MBX-ORDER-COUNT-10S`, `X-MBX-ORDER-COUNT-1D`). Going over earns a 429 with
`Retry-After`; sending on after a 429 earns a 418, an IP ban of 2 minutes to
3 days.

`RateLimiter.acquire` reserves a request's cost in the current windows
before it is sent and holds it back until the next window when the total
would pass `headroom` of a limit, so a burst slows down instead of reaching
the limit. `observe` takes every answer's headers: the server's totals
replace the local estimate when they are higher (other processes on the same
IP count too), a 429 blocks every request until `Retry-After` has passed,
and a 418 refuses every request (`VenueBanned`) until the ban ends.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import structlog

from connectors.binance.errors import DEFAULT_BAN_S, RateLimited, VenueBanned, retry_after_s
from connectors.errors import ParseError
from connectors.rest_metrics import (
    RATE_LIMIT_RESPONSES,
    RATE_LIMIT_USED_WEIGHT,
    RATE_LIMIT_WAIT_SECONDS,
    RATE_LIMIT_WAITS,
    VENUE_BANNED,
)

log = structlog.get_logger(__name__)

LimitKind = Literal["REQUEST_WEIGHT", "ORDERS", "RAW_REQUESTS"]
_INTERVAL_S: Final = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_REASON: Final[dict[LimitKind, str]] = {
    "REQUEST_WEIGHT": "weight",
    "ORDERS": "orders",
    "RAW_REQUESTS": "raw_requests",
}


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """One limit: at most `limit` units of `kind` per `interval_num` × `interval` window."""

    kind: LimitKind
    interval: str
    interval_num: int
    limit: int

    @property
    def interval_s(self) -> int:
        """Return the window length in seconds."""
        return _INTERVAL_S[self.interval] * self.interval_num

    @property
    def header(self) -> str | None:
        """Return the (lower-case) response header that reports this limit's running total."""
        suffix = f"{self.interval_num}{self.interval[0]}".lower()
        if self.kind == "REQUEST_WEIGHT":
            return f"x-mbx-used-weight-{suffix}"
        if self.kind == "ORDERS":
            return f"x-mbx-order-count-{suffix}"
        return None


DEFAULT_RULES: Final = (
    RateLimitRule("REQUEST_WEIGHT", "MINUTE", 1, 6000),
    RateLimitRule("ORDERS", "SECOND", 10, 100),
    RateLimitRule("ORDERS", "DAY", 1, 200000),
    RateLimitRule("RAW_REQUESTS", "MINUTE", 5, 61000),
)


def parse_rate_limits(payload: object) -> tuple[RateLimitRule, ...]:
    """Return the rules of exchangeInfo's `rateLimits`, e.g.

    `{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}`.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("rateLimits"), list):
        raise ParseError("binance exchangeInfo: 'rateLimits' must be a list")
    rules = []
    for item in payload["rateLimits"]:
        if not isinstance(item, dict):
            raise ParseError(f"binance exchangeInfo: rate limit must be an object, got {item!r}")
        kind, interval = item.get("rateLimitType"), item.get("interval")
        num, limit = item.get("intervalNum"), item.get("limit")
        if kind not in _REASON or interval not in _INTERVAL_S:
            continue  # a limit type this client does not send requests against
        if not isinstance(num, int) or not isinstance(limit, int) or num < 1 or limit < 1:
            raise ParseError(f"binance exchangeInfo: malformed rate limit {item!r}")
        rules.append(RateLimitRule(kind, interval, num, limit))
    return tuple(rules)


class RateLimiter:
    """Reserve request weight and order counts before sending; obey 429 and 418 answers."""

    def __init__(
        self,
        venue: str = "binance",
        rules: tuple[RateLimitRule, ...] = DEFAULT_RULES,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        headroom: float = 0.9,
        boundary_margin_s: float = 0.25,
    ) -> None:
        """Limit against `rules`; `clock` should read the venue's time in seconds (windows align to it)."""
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom}")
        self.venue = venue
        self.clock = clock
        self.sleep = sleep
        self.headroom = headroom
        self.boundary_margin_s = boundary_margin_s
        # (kind, window length) → (window index, units used); survives a change of the limit's value
        self._used: dict[tuple[str, int], tuple[int, int]] = {}
        self._rules = rules
        self._backoff_until = 0.0
        self._banned_until = 0.0

    @property
    def rules(self) -> tuple[RateLimitRule, ...]:
        """Return the limits in force."""
        return self._rules

    def set_rules(self, rules: tuple[RateLimitRule, ...]) -> None:
        """Replace the limits (from exchangeInfo); usage already counted is kept."""
        if rules:
            self._rules = rules

    @property
    def banned_until(self) -> float | None:
        """Return when the current 418 ban ends (limiter clock), or None when not banned."""
        return self._banned_until if self.clock() < self._banned_until else None

    async def acquire(self, weight: int, *, orders: int = 0, max_wait_s: float) -> None:
        """Wait until a request of `weight` (placing `orders` orders) fits, then count it.

        Raise VenueBanned during a 418 ban and RateLimited when the wait would be
        longer than `max_wait_s`; in both cases nothing is counted and nothing may be sent.
        """
        while True:
            now = self.clock()
            self._check_ban(now)
            wait, reason = self._wait(weight, orders, now)
            if wait <= 0:
                self._reserve(weight, orders, now)
                return
            if wait > max_wait_s:
                raise RateLimited(
                    f"{self.venue} rate limit ({reason}): next request allowed in {wait:.3f} s, "
                    f"more than the {max_wait_s:g} s this request may wait; not sent",
                    wait,
                )
            RATE_LIMIT_WAITS.labels(self.venue, reason).inc()
            RATE_LIMIT_WAIT_SECONDS.labels(self.venue).inc(wait)
            log.info("rate_limit_wait", venue=self.venue, reason=reason, wait_s=round(wait, 3))
            await self.sleep(wait)

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Take one answer's status and headers into account (every answer, errors included)."""
        now = self.clock()
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        for rule in self._rules:
            reported = _int_header(lowered, rule.header)
            if reported is None:
                continue
            index = self._index(rule, now)
            window, used = self._used.get(_key(rule), (index, 0))
            self._used[_key(rule)] = (index, max(used, reported) if window == index else reported)
            if rule.kind == "REQUEST_WEIGHT" and rule.interval_s == 60:
                RATE_LIMIT_USED_WEIGHT.labels(self.venue).set(reported)
        if status == 429:
            self._on_429(now, retry_after_s(lowered))
        elif status == 418:
            self._on_418(now, retry_after_s(lowered))

    def _on_429(self, now: float, retry_after: float | None) -> None:
        if retry_after is None:  # no hint: wait for the weight window to roll over
            retry_after = max((self._window_end(r, now) - now for r in self._rules), default=60.0)
        self._backoff_until = max(self._backoff_until, now + retry_after)
        RATE_LIMIT_RESPONSES.labels(self.venue, "429").inc()
        log.warning("rate_limited", venue=self.venue, retry_after_s=retry_after)

    def _on_418(self, now: float, retry_after: float | None) -> None:
        ban = DEFAULT_BAN_S if retry_after is None else retry_after
        self._banned_until = max(self._banned_until, now + ban)
        self._backoff_until = max(self._backoff_until, self._banned_until)
        RATE_LIMIT_RESPONSES.labels(self.venue, "418").inc()
        VENUE_BANNED.labels(self.venue).set(1)
        log.error("venue_banned", venue=self.venue, ban_s=ban, until=self._banned_until)

    def _check_ban(self, now: float) -> None:
        if not self._banned_until:
            return
        if now < self._banned_until:
            raise VenueBanned(
                f"{self.venue} bans this IP (HTTP 418) for another {self._banned_until - now:.0f} s; "
                "not sent",
                self._banned_until,
            )
        self._banned_until = 0.0
        VENUE_BANNED.labels(self.venue).set(0)
        log.warning("venue_ban_ended", venue=self.venue)

    def _wait(self, weight: int, orders: int, now: float) -> tuple[float, str]:
        if now < self._backoff_until:
            return self._backoff_until - now, "retry_after"
        longest, reason = 0.0, "weight"
        for rule in self._rules:
            cost = _cost(rule, weight, orders)
            used = self._usage(rule, now)
            # An empty window always admits one request, however heavy: it could never fit otherwise.
            if cost and used and used + cost > rule.limit * self.headroom:
                wait = self._window_end(rule, now) - now + self.boundary_margin_s
                if wait > longest:
                    longest, reason = wait, _REASON[rule.kind]
        return longest, reason

    def _reserve(self, weight: int, orders: int, now: float) -> None:
        for rule in self._rules:
            cost = _cost(rule, weight, orders)
            if cost:
                self._used[_key(rule)] = (self._index(rule, now), self._usage(rule, now) + cost)

    def _usage(self, rule: RateLimitRule, now: float) -> int:
        window, used = self._used.get(_key(rule), (-1, 0))
        return used if window == self._index(rule, now) else 0

    @staticmethod
    def _index(rule: RateLimitRule, now: float) -> int:
        return math.floor(now / rule.interval_s)

    def _window_end(self, rule: RateLimitRule, now: float) -> float:
        return float((self._index(rule, now) + 1) * rule.interval_s)


def _int_header(headers: Mapping[str, str], name: str | None) -> int | None:
    if name is None:
        return None
    value = headers.get(name)
    return int(value) if value is not None and value.isdigit() else None


def _key(rule: RateLimitRule) -> tuple[str, int]:
    return rule.kind, rule.interval_s


def _cost(rule: RateLimitRule, weight: int, orders: int) -> int:
    if rule.kind == "REQUEST_WEIGHT":
        return weight
    if rule.kind == "ORDERS":
        return orders
    return 1
