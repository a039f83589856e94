"""The daemon's JSON log lines: one per event, and writing one never raises."""

from __future__ import annotations

import io

import orjson
import structlog
from aiokafka import TopicPartition


def test_an_event_with_non_string_keys_and_odd_values_is_still_one_json_line(
    captured_logs: io.StringIO,
) -> None:
    # Logging a refused commit once raised TypeError (orjson: "Dict key must be str") inside the
    # handler of that refusal, and the router exited on a rebalance.
    structlog.get_logger("test").warning(
        "router_commit_failed", offsets={0: 11, 3: 40}, partition=TopicPartition("t", 1), api_key="k"
    )
    (line,) = captured_logs.getvalue().splitlines()
    event = orjson.loads(line)
    assert event["event"] == "router_commit_failed"
    assert event["offsets"] == {"0": 11, "3": 40}
    assert "t" in event["partition"] and event["api_key"] == "<redacted>"
