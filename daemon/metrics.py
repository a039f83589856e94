"""Prometheus metrics of the runtime layer (Kafka I/O), and the registration of one process's series.

Module-level objects on the default registry, served by `daemon.http`. Labels are
bounded: `topic` is one of the configured topics, `reason` one of `UNSENT_REASONS`.
`register_process_metrics` creates the connectors' and router's series of one
process at zero and registers its collectors (cache, positions and loss, balances).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Collection, Mapping
from typing import Final, Literal, Protocol

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.registry import Collector

from connectors.metrics import init_venue_metrics
from router.balances import BalanceBook
from router.cache import PriceCache
from router.funding import symbol_assets
from router.loss import LossGuard, register_risk_metrics
from router.metrics import (
    BALANCE_DRIFT,
    BALANCE_READ_OUTCOMES,
    BALANCE_READS,
    init_detector_metrics,
    init_router_metrics,
    register_balance_metrics,
    register_cache_metrics,
)
from router.positions import PositionBook

UnsentReason = Literal["closed", "shutdown"]
UNSENT_REASONS: Final[tuple[UnsentReason, ...]] = ("closed", "shutdown")
SETTINGS_TOPICS: Final = ("control", "preferences")

KAFKA_MESSAGES_SENT = Counter(
    "smartroute_kafka_messages_sent_total",
    "Messages the Kafka broker acknowledged.",
    ["topic"],
)
KAFKA_PRODUCE_ERRORS = Counter(
    "smartroute_kafka_produce_errors_total",
    "Messages Kafka did not take: the producer refused them or their delivery failed.",
    ["topic"],
)
KAFKA_BUFFER_OVERFLOW = Counter(
    "smartroute_kafka_buffer_overflow_total",
    "Messages refused because the publisher's send buffer was full.",
    ["topic"],
)
KAFKA_MESSAGES_UNSENT = Counter(
    "smartroute_kafka_messages_unsent_total",
    "Messages never handed to Kafka: published after close began (closed), or still buffered when "
    "close ran out of time or the producer never started (shutdown).",
    ["topic", "reason"],
)

KAFKA_CLIENT_ERRORS = Counter(
    "smartroute_kafka_client_errors_total",
    "Errors the Kafka client (aiokafka) met and retried or recovered from, such as a lost broker "
    "connection or a partition leader that moved, by client component (`watch_kafka_client_errors`).",
    ["component"],
)

ROUTER_COMMIT_FAILURES = Counter(
    "smartroute_router_commit_failures_total",
    "Offset commits of answered requests that the group refused (a rebalance, a coordinator that moved): "
    "those requests are read again and answered from the ledger, identically, never executed twice.",
)
UNAUTHENTICATED_SETTINGS = Counter(
    "smartroute_unauthenticated_settings_total",
    "Control and preferences messages ignored because signatures are required and the message is not "
    "signed by whom it must be, not fresh, or older than one already applied; each also goes to the DLQ.",
    ["topic"],
)

ORDER_REQUESTS_UNTIMED = Counter(
    "smartroute_order_requests_untimed_total",
    "Order-request records without a usable Kafka timestamp (-1, or a message-format v0 topic): their age "
    "is unknown, so max_request_age_ms cannot apply; only their deadline_ns bounds them.",
)


class _ClientErrorCounter(logging.Handler):
    """Count aiokafka's warnings and errors: each is a fault the client rode through (or reports)."""

    def emit(self, record: logging.LogRecord) -> None:
        KAFKA_CLIENT_ERRORS.labels(record.name.removeprefix("aiokafka.")).inc()


_CLIENT_ERROR_COUNTER: Final = _ClientErrorCounter(logging.WARNING)


def watch_kafka_client_errors() -> None:
    """Count every warning or error aiokafka logs in `smartroute_kafka_client_errors_total`; idempotent."""
    client_logger = logging.getLogger("aiokafka")
    if _CLIENT_ERROR_COUNTER not in client_logger.handlers:
        client_logger.addHandler(_CLIENT_ERROR_COUNTER)


class SendBuffer(Protocol):
    """A publisher's buffer, as the send-buffer gauge sees it."""

    @property
    def buffered(self) -> int:
        """Messages held and not yet handed to the Kafka client."""
        ...


_SEND_BUFFERS: Final[weakref.WeakSet[SendBuffer]] = weakref.WeakSet()


def track_send_buffer(buffer: SendBuffer) -> None:
    """Count `buffer` in the send-buffer gauge for as long as it lives."""
    _SEND_BUFFERS.add(buffer)


# Read at scrape time: publishing a message touches no metric (a Gauge's inc/dec takes a lock).
KAFKA_SEND_BUFFER = Gauge(
    "smartroute_kafka_send_buffer_messages",
    "Messages waiting in the publisher's send buffer.",
)
KAFKA_SEND_BUFFER.set_function(lambda: sum(buffer.buffered for buffer in tuple(_SEND_BUFFERS)))

KAFKA_CONSUMER_LAG = Gauge(
    "smartroute_kafka_consumer_lag_messages",
    "Messages written to a topic that this process's consumer group has not read yet (its share).",
    ["topic", "group"],
)  # set by daemon.kafka.consumers.record_consumer_lag


def register_process_metrics(
    cache: PriceCache,
    feeds: Collection[str],
    *,
    positions: PositionBook | None = None,
    loss: LossGuard | None = None,
    balances: BalanceBook | None = None,
    tradable: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Collector]:
    """Create the series of a process feeding `feeds` at zero; register its collectors and return them.

    With a router: its `positions` and `loss` guard, its `balances` and the `tradable` symbols by venue
    (whose assets get a balance drift series). The caller unregisters the collectors when it stops.
    """
    collectors: list[Collector] = [register_cache_metrics(cache)]
    if positions is not None:
        collectors.append(register_risk_metrics(positions, loss))
        for topic in SETTINGS_TOPICS:  # the router follows both; a refused message is counted by topic
            UNAUTHENTICATED_SETTINGS.labels(topic)
    for venue in feeds:
        init_venue_metrics(venue)
    init_detector_metrics()
    init_router_metrics(feeds)
    if balances is not None:
        collectors.append(register_balance_metrics(balances))
    for venue, symbols in (tradable or {}).items():
        for asset in {asset for symbol in symbols for asset in symbol_assets(symbol)}:
            BALANCE_DRIFT.labels(venue=venue, asset=asset)
        for outcome in BALANCE_READ_OUTCOMES:
            BALANCE_READS.labels(venue=venue, outcome=outcome)
    return collectors


def unregister(collectors: Collection[Collector]) -> None:
    """Unregister `collectors` from the default registry."""
    for collector in collectors:
        REGISTRY.unregister(collector)
