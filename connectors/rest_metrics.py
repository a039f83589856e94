"""Prometheus metrics of every live venue's REST and order path (rate limits, clock, orders).

Module-level objects on the default registry, which `daemon` serves. Labels
are bounded: `venue` from the registry, every other label from the tuples
below. No label or value ever holds a key, a secret or a signed query.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

WAIT_REASONS: Final = ("weight", "orders", "raw_requests", "retry_after", "budget")
LIMIT_STATUSES: Final = ("429", "418", "throttled", "banned")
ORDER_OUTCOMES: Final = ("accepted", "rejected", "unknown", "not_sent")
RECONCILE_RESULTS: Final = ("found", "not_found", "failed")
RESYNC_REASONS: Final = ("start", "scheduled", "rejected")

RATE_LIMIT_WAITS = Counter(
    "smartroute_rate_limit_waits_total",
    "Requests held back by the local rate limiter before sending, by the limit that held them.",
    ["venue", "reason"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "smartroute_rate_limit_wait_seconds_total",
    "Time requests spent held back by the local rate limiter.",
    ["venue"],
)
RATE_LIMIT_USED_WEIGHT = Gauge(
    "smartroute_rate_limit_used_weight",
    "Request weight used in the venue's current 1-minute window, as the venue last reported it.",
    ["venue"],
)
RATE_LIMIT_RESPONSES = Counter(
    "smartroute_rate_limit_responses_total",
    "Rate-limit answers from the venue: 429 or a throttling code (back off), 418 or a ban (nothing sent).",
    ["venue", "status"],
)
VENUE_BANNED = Gauge(
    "smartroute_venue_banned",
    "1 while the venue bans this client (e.g. Binance HTTP 418) and nothing is sent to it, else 0.",
    ["venue"],
)
CLOCK_OFFSET = Gauge(
    "smartroute_clock_offset_seconds",
    "Venue server time minus local time, as last measured.",
    ["venue"],
)
CLOCK_SYNCS = Counter(
    "smartroute_clock_syncs_total",
    "Clock offset measurements, by why: at start, on schedule, or after a timestamp rejection.",
    ["venue", "reason"],
)
LIVE_ORDERS = Counter(
    "smartroute_live_orders_total",
    "Live order placements by what is known of them: accepted, rejected, unknown outcome, not sent.",
    ["venue", "outcome"],
)
ORDER_RECONCILIATIONS = Counter(
    "smartroute_order_reconciliations_total",
    "Order queries that settle an unknown outcome or a restart, by what the venue said.",
    ["venue", "result"],
)


ORDER_ACK_SECONDS = Gauge(
    "smartroute_order_ack_seconds",
    "Moving average of the venue's order round trip (send to acknowledged answer); what `fastest` ranks by.",
    ["venue"],
)
TAKER_FEE_BPS = Gauge(
    "smartroute_venue_taker_fee_bps",
    "The taker fee the router prices the venue at: the account's, read from the venue, else configured.",
    ["venue"],
)


def init_rest_metrics(venue: str) -> None:
    """Create every labelled series of `venue` so each exists from start with value zero."""
    for reason in WAIT_REASONS:
        RATE_LIMIT_WAITS.labels(venue, reason)
    RATE_LIMIT_WAIT_SECONDS.labels(venue)
    RATE_LIMIT_USED_WEIGHT.labels(venue).set(0)
    for status in LIMIT_STATUSES:
        RATE_LIMIT_RESPONSES.labels(venue, status)
    VENUE_BANNED.labels(venue).set(0)
    CLOCK_OFFSET.labels(venue)
    for sync_reason in RESYNC_REASONS:
        CLOCK_SYNCS.labels(venue, sync_reason)
    for outcome in ORDER_OUTCOMES:
        LIVE_ORDERS.labels(venue, outcome)
    for result in RECONCILE_RESULTS:
        ORDER_RECONCILIATIONS.labels(venue, result)
    ORDER_ACK_SECONDS.labels(venue)
    TAKER_FEE_BPS.labels(venue)
