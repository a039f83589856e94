"""Everything smartroute does with Kafka, and the only package under `daemon/` that imports aiokafka.

    settings.py    client options from `[kafka]` (TLS, SASL); starting a producer
    publisher.py   the Publisher: a bounded, never-blocking buffer drained into the process's producer
    batches.py     the publisher's record batches, partitioned as aiokafka's own send() would
    consumers.py   the one way to build a consumer (`new_consumer`), its start and its lag gauge
    followers.py   group-less topic followers (control, preferences, opportunities)
    topics.py      the contract's topics on a cluster: create, check, require at start
    probe.py       the broker probe behind readiness
    access.py      what a secured cluster refused (login, ACLs), as KafkaAccessDenied naming it

One producer per process: the Publisher's. The router service sends its results through it
(`Publisher.send_and_wait`), so results and opportunities share one connection and one
producer id. `smartroute order`/`halt`/`resume` and the demo are separate short-lived
processes with their own plain producer (`start_plain_producer`).

aiokafka's types that appear in signatures are re-exported here: `Consumer`, `Producer`,
`ConsumerRecord`, `TopicPartition`, `KafkaError`.
"""

from __future__ import annotations

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from daemon.kafka.access import AUTHORIZATION_ERRORS, denied
from daemon.kafka.consumers import (
    Consumer,
    Group,
    Offsets,
    new_consumer,
    record_consumer_lag,
    start_unless_stopped,
)
from daemon.kafka.followers import FETCH_MAX_WAIT_MS, TopicFollower
from daemon.kafka.probe import KafkaMetadataProbe
from daemon.kafka.publisher import Publisher, init_publisher_metrics
from daemon.kafka.settings import Producer, client_options, start_plain_producer, start_producer

__all__ = [
    "AUTHORIZATION_ERRORS",
    "FETCH_MAX_WAIT_MS",
    "Consumer",
    "ConsumerRecord",
    "Group",
    "KafkaError",
    "KafkaMetadataProbe",
    "Offsets",
    "Producer",
    "Publisher",
    "TopicFollower",
    "TopicPartition",
    "client_options",
    "denied",
    "init_publisher_metrics",
    "new_consumer",
    "record_consumer_lag",
    "start_plain_producer",
    "start_producer",
    "start_unless_stopped",
]
