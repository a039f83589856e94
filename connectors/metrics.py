"""Prometheus metrics of the market-data connection layer.

Module-level objects on the default registry, which `daemon` serves. Labels are
bounded: `venue` comes from the registry, `reason` from `RECONNECT_REASONS`
(connections) or `connectors.book.BOOK_INVALID_REASONS` (book resyncs).
"""

from __future__ import annotations

from typing import Final, Literal

from prometheus_client import Counter, Gauge

from connectors.book import BOOK_INVALID_REASONS

# "book_invalid": a book failed its integrity rule on a venue that can resync it only by reconnecting.
ReconnectReason = Literal["error", "closed", "silence", "server_shutdown", "max_age", "book_invalid"]
RECONNECT_REASONS: Final[tuple[ReconnectReason, ...]] = (
    "error",
    "closed",
    "silence",
    "server_shutdown",
    "max_age",
    "book_invalid",
)

WS_MESSAGES = Counter(
    "smartroute_ws_messages_total",
    "WebSocket frames received from a venue.",
    ["venue"],
)
WS_PARSE_ERRORS = Counter(
    "smartroute_ws_parse_errors_total",
    "Venue frames that could not be parsed and were skipped.",
    ["venue"],
)
WS_RECONNECTS = Counter(
    "smartroute_ws_reconnects_total",
    "Venue connections that ended and were reopened, by why they ended.",
    ["venue", "reason"],
)
WS_CONNECTED = Gauge(
    "smartroute_ws_connected",
    "1 while the venue's market-data connection is open, else 0.",
    ["venue"],
)
QUOTES = Counter(
    "smartroute_quotes_total",
    "Best bid/offer quotes parsed from venue frames.",
    ["venue"],
)
WS_LAST_MESSAGE_TIMESTAMP = Gauge(
    "smartroute_ws_last_message_timestamp_seconds",
    "Wall-clock time the last frame from the venue was received, in seconds since the Unix epoch.",
    ["venue"],
)

BOOK_RESYNCS = Counter(
    "smartroute_book_resyncs_total",
    "Local order books discarded and resynced, by why the book could no longer be trusted.",
    ["venue", "reason"],
)
BOOK_GAPS = Counter(
    "smartroute_book_gaps_total",
    "Gaps found in a venue's book update sequence.",
    ["venue"],
)
BOOK_CHECKSUM_FAILURES = Counter(
    "smartroute_book_checksum_failures_total",
    "Local order books whose checksum disagreed with the venue's.",
    ["venue"],
)
BOOK_CROSSED = Counter(
    "smartroute_book_crossed_total",
    "Local order books that became crossed (best bid at or above best ask) after an update.",
    ["venue"],
)
BOOK_SNAPSHOT_FAILURES = Counter(
    "smartroute_book_snapshot_failures_total",
    "REST book snapshot requests that failed and were retried.",
    ["venue"],
)


def init_venue_metrics(venue: str) -> None:
    """Create every labelled series of `venue` so each exists from start with value zero."""
    WS_MESSAGES.labels(venue)
    WS_PARSE_ERRORS.labels(venue)
    for reason in RECONNECT_REASONS:
        WS_RECONNECTS.labels(venue, reason)
    WS_CONNECTED.labels(venue).set(0)
    QUOTES.labels(venue)
    WS_LAST_MESSAGE_TIMESTAMP.labels(venue)
    for book_reason in BOOK_INVALID_REASONS:
        BOOK_RESYNCS.labels(venue, book_reason)
    BOOK_GAPS.labels(venue)
    BOOK_CHECKSUM_FAILURES.labels(venue)
    BOOK_CROSSED.labels(venue)
    BOOK_SNAPSHOT_FAILURES.labels(venue)
