"""Prometheus metrics of the market-data connection layer.

Module-level objects on the default registry, which `daemon` serves. Labels are
bounded: `venue` comes from the registry, `reason` from `RECONNECT_REASONS`
(connections), `connectors.book.BOOK_INVALID_REASONS` (book resyncs) or
`connectors.book.QUOTE_REJECT_REASONS` (quotes a feed refused: crossed or out of order).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connectors.book import BOOK_INVALID_REASONS, QUOTE_REJECT_REASONS, all_quote_rejects, quote_rejects

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
    frame_counters(venue)
    quote_rejects(venue)
    WS_PARSE_ERRORS.labels(venue)
    for reason in RECONNECT_REASONS:
        WS_RECONNECTS.labels(venue, reason)
    WS_CONNECTED.labels(venue).set(0)
    for book_reason in BOOK_INVALID_REASONS:
        BOOK_RESYNCS.labels(venue, book_reason)
    BOOK_GAPS.labels(venue)
    BOOK_CHECKSUM_FAILURES.labels(venue)
    BOOK_CROSSED.labels(venue)
    BOOK_SNAPSHOT_FAILURES.labels(venue)


@dataclass(slots=True)
class FrameCounters:
    """One venue's per-frame statistics: plain numbers on the hot path, exported at scrape time.

    A Prometheus counter takes a lock on every increment; at tens of thousands
    of frames a second that was a tenth of the ingest path (see `make bench`).
    """

    messages: int = 0
    quotes: int = 0
    last_message_ns: int = 0


_FRAME_COUNTERS: dict[str, FrameCounters] = {}


def frame_counters(venue: str) -> FrameCounters:
    """Return the shared frame counters of `venue` (every runner of the venue adds to the same ones)."""
    counters = _FRAME_COUNTERS.get(venue)
    if counters is None:
        counters = _FRAME_COUNTERS[venue] = FrameCounters()
    return counters


class _FrameCollector(Collector):
    """Expose every venue's FrameCounters as smartroute_ws_messages_total, smartroute_quotes_total and
    smartroute_ws_last_message_timestamp_seconds, and its refused quotes as
    smartroute_quotes_rejected_total{venue,reason}."""

    def collect(self) -> Iterable[Metric]:
        messages = CounterMetricFamily(
            "smartroute_ws_messages", "WebSocket frames received from a venue.", labels=["venue"]
        )
        quotes = CounterMetricFamily(
            "smartroute_quotes", "Best bid/offer quotes parsed from venue frames.", labels=["venue"]
        )
        last = GaugeMetricFamily(
            "smartroute_ws_last_message_timestamp_seconds",
            "Wall-clock time the last frame from the venue was received, in seconds since the Unix epoch.",
            labels=["venue"],
        )
        rejected = CounterMetricFamily(
            "smartroute_quotes_rejected",
            "Quotes a feed refused to serve, by why: crossed (best bid >= best ask) or out_of_order "
            "(older than an update already applied or served for the symbol).",
            labels=["venue", "reason"],
        )
        for venue, counters in sorted(_FRAME_COUNTERS.items()):
            messages.add_metric([venue], counters.messages)
            quotes.add_metric([venue], counters.quotes)
            last.add_metric([venue], counters.last_message_ns / 1e9)
        for venue, rejects in sorted(all_quote_rejects().items()):
            for reason in QUOTE_REJECT_REASONS:
                rejected.add_metric([venue, reason], getattr(rejects, reason))
        yield from (messages, quotes, last, rejected)


REGISTRY.register(_FrameCollector())
