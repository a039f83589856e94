"""No stale requests: a request older than max_request_age_ms (by its Kafka record's time) is `expired`."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY
from test_smart_router import FEES, MS, VENUES, World, order, three_books

from daemon.router_service import request_enqueued
from router.preferences import PreferenceStore
from router.request import RequestRules
from router.request_age import Enqueued, expired_message
from router.smart import SmartRouter

MAX_AGE_MS = 30_000


def aged_world(tmp_path: Path, max_request_age_ms: int | None = MAX_AGE_MS) -> World:
    """A paper world whose router ages requests, as `build_router` makes it."""
    world = World(tmp_path / "state")
    three_books(world)
    world.router = SmartRouter(
        world.cache,
        world.executor,
        world.ledger,
        PreferenceStore({}, known_venues=VENUES),
        world.risk,
        world.kill_switch,
        RequestRules(frozenset(VENUES), frozenset({"BTC-USDT"})),
        FEES,
        max_request_age_ms=max_request_age_ms,
        clock_ns=world.clock,
    )
    return world


def record(timestamp: int | None, timestamp_type: int | None = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="smartroute.orders",
        partition=0,
        offset=7,
        timestamp=timestamp,  # type: ignore[arg-type]
        timestamp_type=timestamp_type,  # type: ignore[arg-type]
        key=b"r-1",
        value=b"{}",
        checksum=None,
        serialized_key_size=3,
        serialized_value_size=2,
        headers=(),
    )


def untimed_count() -> float:
    return REGISTRY.get_sample_value("smartroute_order_requests_untimed_total") or 0.0


# ----- a record's time ------------------------------------------------------------------------------


def test_a_create_time_record_is_aged_from_the_producers_stamp() -> None:
    assert request_enqueued(record(1_700_000_000_123, 0)) == Enqueued(1_700_000_000_123 * MS, "create_time")


def test_a_log_append_time_record_is_aged_from_the_brokers_stamp() -> None:
    enqueued = request_enqueued(record(1_700_000_000_456, 1))
    assert enqueued == Enqueued(1_700_000_000_456 * MS, "log_append_time")


@pytest.mark.parametrize("timestamp", [-1, None], ids=["-1", "message format v0"])
def test_a_record_without_a_timestamp_has_no_age_and_is_counted(timestamp: int | None) -> None:
    before = untimed_count()
    assert request_enqueued(record(timestamp, None if timestamp is None else 0)) is None
    assert untimed_count() == before + 1


def test_age_is_now_minus_the_record_time_and_a_clock_ahead_of_ours_is_age_zero() -> None:
    enqueued = Enqueued(1_000 * MS, "create_time")
    assert enqueued.age_ns(1_250 * MS) == 250 * MS
    assert enqueued.age_ns(900 * MS) == 0


def test_the_bound_itself_is_still_fresh_one_nanosecond_more_is_expired() -> None:
    enqueued = Enqueued(0, "log_append_time")
    assert expired_message(enqueued, 30_000 * MS, 30_000 * MS) is None
    message = expired_message(enqueued, 30_000 * MS + 1, 30_000 * MS)
    assert message is not None
    assert "30000 ms old" in message and "LogAppendTime (broker clock)" in message
    assert "max_request_age_ms 30000" in message
    assert expired_message(None, 10**18, 30_000 * MS) is None  # no timestamp: not aged
    assert expired_message(enqueued, 10**18, None) is None  # no bound (the Python API)


# ----- the router's answer --------------------------------------------------------------------------


async def test_an_old_request_is_answered_expired_and_never_executed(tmp_path: Path) -> None:
    world = aged_world(tmp_path)
    now = world.clock.now_ns
    old = Enqueued(now - (MAX_AGE_MS + 1) * MS, "create_time")
    handled = await world.router.handle(order("old"), enqueued=old)
    result = orjson.loads(handled.result or b"")
    assert (result["status"], result["reject_code"]) == ("rejected", "expired")
    assert "30001 ms old" in result["message"] and "nothing was executed" in result["message"]
    assert handled.invalid is None  # a valid request answered late: not a DLQ entry
    assert world.executor.sent == [] and world.ledger.legs("old") == []
    # Claimed and completed like any answer: a redelivery, even much later, gets the same bytes.
    world.clock.now_ns += 3_600_000 * MS
    again = await world.router.handle(order("old"), enqueued=old)
    assert again.replayed and again.result == handled.result


async def test_a_fresh_request_executes_and_its_redelivery_after_the_bound_replays_the_fill(
    tmp_path: Path,
) -> None:
    world = aged_world(tmp_path)
    fresh = Enqueued(world.clock.now_ns - MAX_AGE_MS * MS, "create_time")
    handled = await world.router.handle(order("fresh"), enqueued=fresh)
    assert orjson.loads(handled.result or b"")["status"] == "filled"
    world.clock.now_ns += 600_000 * MS  # redelivered ten minutes later: answered from the ledger
    again = await world.router.handle(order("fresh"), enqueued=fresh)
    assert again.replayed and again.result == handled.result and len(world.executor.sent) == 1


async def test_a_passed_deadline_is_deadline_exceeded_whatever_the_age(tmp_path: Path) -> None:
    world = aged_world(tmp_path)
    now = world.clock.now_ns
    old = Enqueued(now - 3_600_000 * MS, "create_time")
    handled = await world.router.handle(order("late", deadline_ns=now - 1), enqueued=old)
    assert orjson.loads(handled.result or b"")["reject_code"] == "deadline_exceeded"
    # Within its deadline but past the age bound: the age bound, reached first, answers.
    handled = await world.router.handle(order("old", deadline_ns=now + 60_000 * MS), enqueued=old)
    assert orjson.loads(handled.result or b"")["reject_code"] == "expired"
    assert world.executor.sent == []


async def test_without_a_record_time_only_the_deadline_bounds_a_request(tmp_path: Path) -> None:
    world = aged_world(tmp_path)
    handled = await world.router.handle(order("untimed"))  # the Python API path, or a -1 timestamp
    assert orjson.loads(handled.result or b"")["status"] == "filled"
