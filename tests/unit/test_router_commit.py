"""A commit the consumer group refuses (a rebalance, a moved coordinator) never stops the router."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import CommitFailedError, KafkaConnectionError
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY

from daemon.router_service import RouterService
from router.errors import ResultNotPublished


class RefusingConsumer:
    def __init__(self) -> None:
        self.asked: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.asked.append(offsets)
        raise CommitFailedError(
            "the group has already rebalanced and assigned the partitions to another member"
        )


def _failures() -> float:
    return REGISTRY.get_sample_value("smartroute_router_commit_failures_total") or 0.0


async def test_a_refused_commit_is_counted_and_the_router_goes_on() -> None:
    service: Any = RouterService.__new__(RouterService)  # only _commit is exercised: no broker, no router
    consumer = RefusingConsumer()
    offsets = {TopicPartition("smartroute.orders", 3): 42, TopicPartition("smartroute.orders", 5): 7}
    before = _failures()
    await RouterService._commit(service, consumer, offsets)  # type: ignore[arg-type]
    assert consumer.asked == [offsets]  # every partition that moved, in one request
    assert _failures() == before + 1


def test_the_failure_counter_exists_from_start() -> None:
    assert REGISTRY.get_sample_value("smartroute_router_commit_failures_total") is not None


class DownPublisher:
    def __init__(self) -> None:
        self.asked: list[list[tuple[str, bytes | None, bytes]]] = []

    async def send_and_wait(self, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        self.asked.append(messages)
        raise KafkaConnectionError("the broker is unreachable")


async def test_a_settled_result_the_broker_does_not_acknowledge_is_reported_to_the_settler() -> None:
    """The settler keeps the result and publishes it again: the Kafka error is mapped, never fatal."""
    service: Any = RouterService.__new__(RouterService)  # only _publish_result is exercised
    service._publisher = DownPublisher()
    service.results_topic = "smartroute.results"
    with pytest.raises(ResultNotPublished, match="unreachable") as refused:
        await RouterService._publish_result(service, "r-1", b"{}")
    assert isinstance(refused.value.__cause__, KafkaConnectionError)
    assert service._publisher.asked == [[("smartroute.results", b"r-1", b"{}")]]
