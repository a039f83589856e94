"""Prometheus metrics of the runtime layer (Kafka I/O for now).

Module-level objects on the default registry, served by `daemon.http`. Labels are
bounded: `topic` is one of the configured topics, `reason` one of `UNSENT_REASONS`.
"""

from __future__ import annotations

from typing import Final, Literal

from prometheus_client import Counter, Gauge

UnsentReason = Literal["closed", "shutdown"]
UNSENT_REASONS: Final[tuple[UnsentReason, ...]] = ("closed", "shutdown")

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
KAFKA_SEND_BUFFER = Gauge(
    "smartroute_kafka_send_buffer_messages",
    "Messages waiting in the publisher's send buffer.",
)
