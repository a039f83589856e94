"""Scale-out mode: feeds publish every quote to `smartroute.quotes`; detectors consume them.

Quotes are keyed by symbol, so detectors in one consumer group split the
symbols between them and each sees every venue of its symbols, in the order
the feeds saw them. A quote carries its book's depth, and a book the feeds
withdraw (gap, checksum, crossed, disconnect) is published as a withdrawal on
the same key, so a detector here holds the same books as one in the feeds'
process and decides as it would. A quote's age is carried across the hop (its
`received_ns` against the wall clock), so the freshness rules see its true
age, transit included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
import structlog

from connectors.types import Quote, Withdrawal, quote_message_of
from daemon.config import KafkaConfig
from daemon.kafka import (
    ConsumerRecord,
    Group,
    Publisher,
    new_consumer,
    record_consumer_lag,
    start_unless_stopped,
)
from daemon.router_service import dlq_entry

log = structlog.get_logger(__name__)

DETECTOR_GROUP = "smartroute-detector"
_POLL_MS = 100


class QuoteFollower:
    """Feed this member's share of the quotes topic: quotes to `on_quote`, withdrawals to `on_withdrawal`."""

    def __init__(
        self,
        kafka: KafkaConfig,
        session_timeout_ms: int,
        on_quote: Callable[[Quote, int], None],
        publisher: Publisher,
        *,
        on_withdrawal: Callable[[Withdrawal], None],
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.kafka = kafka
        self.session_timeout_ms = session_timeout_ms  # the detector group's (`[router] session_timeout_ms`)
        self.topic = kafka.topic("quotes")
        self.on_quote = on_quote
        self.on_withdrawal = on_withdrawal
        self.publisher = publisher
        self.wall_clock_ns = wall_clock_ns
        self.invalid = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; malformed messages go to the DLQ and are counted, never applied."""
        # Offsets committed automatically: quotes are state, not requests, so a re-read after a crash
        # is harmless; a member without a committed offset starts at the end: an old quote is stale anyway.
        group = Group(DETECTOR_GROUP, self.session_timeout_ms, auto_commit=True)
        consumer = new_consumer(self.kafka, self.topic, group=group, offsets="latest")
        if not await start_unless_stopped(consumer, stop):
            return
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=_POLL_MS)
                for records in batches.values():
                    for record in records:
                        self._apply(record)
                await record_consumer_lag(consumer, self.topic, DETECTOR_GROUP)
        finally:
            await consumer.stop()

    def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            message = orjson.loads(record.value or b"")
            if not isinstance(message, dict):
                raise TypeError("a quotes message must be a JSON object")
            quote = quote_message_of(message)
        except (ValueError, TypeError) as exc:
            self.invalid += 1
            log.warning(
                "quote_message_invalid", error=str(exc), offset=record.offset, partition=record.partition
            )
            self.publisher.publish(
                self.kafka.topic("dlq"), record.key, dlq_entry(record, str(exc), "invalid_quote")
            )
            return
        if isinstance(quote, Withdrawal):
            self.on_withdrawal(quote)
        else:
            self.on_quote(quote, max(0, self.wall_clock_ns() - quote.received_ns))
