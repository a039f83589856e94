"""How old a request is when the router reaches it, and when it is too old to execute.

A request that waited in the orders topic while the router was down (or behind a
backlog) was written against a market that has moved: executing it late is a
stale order. Its age is measured from when it entered the transport — the Kafka
record's timestamp — to the moment the router reaches it:

- `CreateTime` (the topic's default): the time the producer stamped on the record,
  by the producer's clock;
- `LogAppendTime` (`message.timestamp.type=LogAppendTime` on the topic): the time
  the broker appended it, by the broker's clock.

A clock ahead of the router's gives a negative age, counted as 0. A record with no
timestamp (-1, or none: a message-format v0 topic) has no age: it is judged by its
`deadline_ns` alone (the caller logs and counts it). Requests submitted through the
Python API have no record and no age either.

The router answers a request older than `[router] max_request_age_ms` `rejected`
with `reject_code` `expired` and never executes it. `deadline_ns` is checked first,
when the request is validated: the request is executable only while both bounds
hold, and a request past its own deadline is `deadline_exceeded` whatever its age.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

EXPIRED: Final = "expired"

TimestampKind = Literal["create_time", "log_append_time"]


@dataclass(frozen=True, slots=True)
class Enqueued:
    """When a request entered the transport, and whose clock says so."""

    at_ns: int
    kind: TimestampKind  # create_time: the producer's clock; log_append_time: the broker's

    def age_ns(self, now_ns: int) -> int:
        """Return how long ago the request was enqueued, never below 0 (a clock ahead of ours)."""
        return max(0, now_ns - self.at_ns)


def expired_message(enqueued: Enqueued | None, now_ns: int, max_age_ns: int | None) -> str | None:
    """Return why the request is too old to execute, or None if it may still execute."""
    if enqueued is None or max_age_ns is None:
        return None
    age_ns = enqueued.age_ns(now_ns)
    if age_ns <= max_age_ns:
        return None
    which = (
        "CreateTime (producer clock)" if enqueued.kind == "create_time" else "LogAppendTime (broker clock)"
    )
    return (
        f"the request is {age_ns // 1_000_000} ms old (its Kafka record's {which} is {enqueued.at_ns} ns), "
        f"over max_request_age_ms {max_age_ns // 1_000_000}; nothing was executed"
    )
