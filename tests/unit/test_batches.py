"""How the publisher turns buffered messages into record batches: partitions, order, oversize refusals."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from daemon.kafka.batches import MAX_REQUEST_SIZE, KeyPartitions, Message, Route, build


class FakeBuilder:
    """aiokafka's BatchBuilder contract: append returns None (and closes) once `capacity` messages are in."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.messages: list[tuple[bytes | None, bytes]] = []
        self.closed = False

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes) -> object | None:
        assert timestamp is None  # the builder stamps each message as it is appended
        if self.closed or len(self.messages) >= self.capacity:
            self.closed = True
            return None
        self.messages.append((key, value))
        return object()


def routes_for(topics: list[str], partitions: int = 4) -> dict[str, Route]:
    keys = KeyPartitions()
    return {topic: keys.route(topic, range(partitions), range(partitions)) for topic in topics}


def test_keys_go_to_the_partition_the_java_client_picks() -> None:
    # Partitions of these keys over 1000 partitions, as Kafka's Java DefaultPartitioner computes them.
    route = KeyPartitions().route("t", range(1000), range(1000))
    java = {b"": 681, b"a": 524, b"ab": 434, b"abc": 107, b"123456789": 566, b"\x00 ": 742}
    assert {key: route.partition(key) for key in java} == java


def test_a_full_batch_is_followed_by_a_new_one_for_the_same_partition_in_publish_order() -> None:
    messages: list[Message] = [("t", b"BTC", b"%d" % i) for i in range(7)]
    batches, failures = build(messages, routes_for(["t"]), lambda: FakeBuilder(capacity=3))
    assert failures == []
    assert [b.count for b in batches] == [3, 3, 1]
    assert len({b.partition for b in batches}) == 1
    values = [value for b in batches for _, value in b.builder.messages]
    assert values == [b"%d" % i for i in range(7)]


def test_a_message_too_large_for_any_request_fails_alone_and_the_rest_are_batched() -> None:
    huge = b"x" * (MAX_REQUEST_SIZE + 1)
    messages: list[Message] = [
        ("t", b"a", b"1"),
        ("t", b"big", huge),
        ("t", b"a", b"2"),
        ("t", b"other", huge),
        ("u", b"a", b"3"),
    ]
    batches, failures = build(messages, routes_for(["t", "u"]), lambda: FakeBuilder(capacity=100))
    assert [(f.topic, f.first_key, f.count) for f in failures] == [("t", b"big", 2)]
    assert "MessageSizeTooLargeError" in repr(failures[0].error)
    sent = sorted((b.topic, value) for b in batches for _, value in b.builder.messages)
    assert sent == [("t", b"1"), ("t", b"2"), ("u", b"3")]


def test_a_message_an_empty_batch_refuses_is_a_failure_not_a_loss() -> None:
    batches, failures = build([("t", b"k", b"v")], routes_for(["t"]), lambda: FakeBuilder(capacity=0))
    assert batches == []
    assert [(f.first_key, f.count) for f in failures] == [(b"k", 1)]


def test_unkeyed_messages_of_one_pass_share_one_batch_on_an_available_partition() -> None:
    route = KeyPartitions().route("t", range(8), available=[5])
    batches, _ = build([("t", None, b"%d" % i) for i in range(4)], {"t": route}, lambda: FakeBuilder(100))
    assert [(b.partition, b.count) for b in batches] == [(5, 4)]


def test_messages_of_a_topic_without_a_route_are_left_to_the_caller() -> None:
    batches, failures = build([("gone", b"k", b"v")], routes_for(["t"]), lambda: FakeBuilder(100))
    assert (batches, failures) == ([], [])


@given(
    st.lists(st.tuples(st.sampled_from(["t", "u"]), st.sampled_from([b"a", b"b", b"c", b"d", None]))),
    st.integers(min_value=1, max_value=5),
)
def test_every_message_is_batched_once_and_each_partition_keeps_publish_order(
    keyed: list[tuple[str, bytes | None]], capacity: int
) -> None:
    messages: list[Message] = [(topic, key, b"%d" % i) for i, (topic, key) in enumerate(keyed)]
    routes = routes_for(["t", "u"], partitions=3)
    batches, failures = build(messages, routes, lambda: FakeBuilder(capacity))
    assert failures == []
    assert sum(b.count for b in batches) == len(messages)
    per_partition: dict[tuple[str, int], list[bytes]] = defaultdict(list)
    for batch in batches:  # submitted in this order
        assert batch.count == len(batch.builder.messages)
        assert batch.first_key == batch.builder.messages[0][0]
        per_partition[batch.topic, batch.partition] += [value for _, value in batch.builder.messages]
    for (topic, partition), values in per_partition.items():
        expected = [v for t, k, v in messages if t == topic and routes[topic].partition(k) == partition]
        assert values == expected
