"""Order requests in flight: many keys at once, one key in order, offsets committed under the lowest open.

The router service (`daemon.router_service`) answers up to `[router]
max_in_flight` order requests at once. Requests with the same key — the Kafka
record's key, else the request_id — are executed and answered one after
another in offset order (`router.per_key`); a request of a slow or dark venue
delays only the requests behind it with its key.

Each request is aged by its record's time (`request_enqueued`); a record that
cannot be used goes to the DLQ as `dlq_entry` describes it.

`Watermarks` keeps, per partition, the offsets handed out and which of them
are answered (their results acknowledged by the broker). A partition's offset
is committed only up to its lowest request not yet answered, so a crash or a
rebalance redelivers every request whose answer is not known to be out; the
ledger answers the ones already executed with their stored results. Before a
rebalance takes partitions away, what is answered is committed and the
partitions are forgotten; requests of theirs still running finish and publish
their results, and their new owner finds them claimed (`router.ledger`).
"""

from __future__ import annotations

import base64
import time

import orjson
import structlog

from daemon.kafka import ConsumerRecord, TopicPartition
from daemon.metrics import ORDER_REQUESTS_UNTIMED
from router.request_age import Enqueued
from router.validation import peek_identity

log = structlog.get_logger("daemon.router_service")

_LOG_APPEND_TIME = 1  # a record's timestamp_type when the broker stamped it (0: CreateTime, the producer)


class Watermarks:
    """Per partition: offsets handed out, in order, and how far everything below is answered."""

    def __init__(self) -> None:
        """Start with nothing handed out."""
        self._open: dict[TopicPartition, dict[int, bool]] = {}

    def started(self, partition: TopicPartition, offset: int) -> None:
        """Record that the request at `offset` of `partition` is being answered (offsets rise)."""
        self._open.setdefault(partition, {})[offset] = False

    def answered(self, partition: TopicPartition, offset: int) -> None:
        """Record that the request at `offset` was answered: its results are acknowledged.

        A partition a rebalance took away since (`forget`) is no longer tracked: nothing to record.
        """
        offsets = self._open.get(partition)
        if offsets is not None and offset in offsets:
            offsets[offset] = True

    def forget(self, partitions: frozenset[TopicPartition]) -> None:
        """Stop tracking `partitions` (a rebalance took them): their new owner reads what is open again."""
        for partition in partitions:
            self._open.pop(partition, None)

    def open(self) -> int:
        """Return how many requests are handed out and not yet below a watermark."""
        return sum(len(offsets) for offsets in self._open.values())

    def committable(self) -> dict[TopicPartition, int]:
        """Return the offset to commit of each partition whose watermark moved since the last call.

        Every request below the returned offset is answered; the lowest one not answered (if any)
        is at the returned offset, so it is read again after a crash.
        """
        moved: dict[TopicPartition, int] = {}
        for partition, offsets in self._open.items():
            for offset, done in list(offsets.items()):
                if not done:
                    break
                del offsets[offset]
                moved[partition] = offset + 1
        return moved


def order_key(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """Return what orders `record` among the requests in flight: its Kafka key, else its request_id."""
    key: bytes | None = record.key
    if key is not None:
        return "key:" + key.decode("latin-1")  # any bytes, one to one
    request_id: str | None = peek_identity(record.value or b"")[0]
    return None if request_id is None else "request_id:" + request_id


def request_enqueued(record: ConsumerRecord[bytes, bytes]) -> Enqueued | None:
    """Return when `record` entered the topic, by its timestamp; None (logged, counted) if it has none."""
    if record.timestamp is None or record.timestamp < 0:
        ORDER_REQUESTS_UNTIMED.inc()
        log.warning(
            "order_request_untimed",
            partition=record.partition,
            offset=record.offset,
            timestamp=record.timestamp,
        )
        return None
    if record.timestamp_type == _LOG_APPEND_TIME:
        return Enqueued(record.timestamp * 1_000_000, "log_append_time")
    return Enqueued(record.timestamp * 1_000_000, "create_time")


def dlq_entry(record: ConsumerRecord[bytes, bytes], error: str, reject_code: str | None) -> bytes:
    """Return the DLQ message for a record that could not be used: its exact bytes, origin and error."""
    value = record.value
    try:
        text = value.decode() if value is not None else None
    except UnicodeDecodeError:
        text = None
    return orjson.dumps(
        {
            "v": 1,
            "source_topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": None if record.key is None else base64.b64encode(record.key).decode(),
            "value_base64": None if value is None else base64.b64encode(value).decode(),
            "value_text": text,
            "headers": [
                {"key": key, "value_base64": None if raw is None else base64.b64encode(raw).decode()}
                for key, raw in record.headers
            ],
            "error": error,
            "reject_code": reject_code,
            "received_ns": time.time_ns(),
        }
    )
