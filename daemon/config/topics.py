"""`[topics]`: how `smartroute topics create` makes the contract's topics and what `topics check` expects.

    [topics]
    partitions = 6                 # every topic but control, which has 1 (one order of commands)
    replication_factor = 3         # unset: min(3, brokers in the cluster)
    min_insync_replicas = 2        # unset: replication_factor - 1, at least 1
    [topics.retention_ms]          # per topic; -1 keeps messages forever
    quotes = 3600000

`preferences` is compacted (the latest message per user is kept), so it takes no retention.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from daemon.config.table import Table

# The Kafka contract's topics, without the prefix (README "Kafka contract").
CONTRACT_TOPICS: Final = ("quotes", "opportunities", "orders", "results", "preferences", "control", "dlq")
COMPACTED: Final = frozenset({"preferences"})
SINGLE_PARTITION: Final = frozenset({"control"})
_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 24 * _HOUR_MS
DEFAULT_RETENTION_MS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "quotes": _HOUR_MS,  # the busiest topic, and stale within seconds
        "opportunities": _DAY_MS,
        "orders": 7 * _DAY_MS,
        "results": 7 * _DAY_MS,
        "control": -1,  # forever: a halt must hold across any restart
        "dlq": 30 * _DAY_MS,
    }
)
_MAX_PARTITIONS: Final = 10_000
_MAX_REPLICAS: Final = 32_767


def _default_retention() -> Mapping[str, int]:
    return DEFAULT_RETENTION_MS


@dataclass(frozen=True, slots=True)
class TopicsConfig:
    """`[topics]`: partitions, replication and retention of the contract's topics (module docstring)."""

    partitions: int = 6
    replication_factor: int | None = None  # None: min(3, brokers in the cluster)
    min_insync_replicas: int | None = None  # None: replication_factor - 1, at least 1
    retention_ms: Mapping[str, int] = field(default_factory=_default_retention)


def read_topics(t: Table) -> TopicsConfig:
    """Validate the `[topics]` table."""
    d = TopicsConfig()
    replicas = _optional_count(t, "replication_factor")
    in_sync = _optional_count(t, "min_insync_replicas")
    if replicas is not None and in_sync is not None and in_sync > replicas:
        raise t.error("min_insync_replicas", f"must be ≤ replication_factor ({replicas}), got {in_sync}")
    cfg = TopicsConfig(
        partitions=t.integer("partitions", d.partitions, minimum=1, maximum=_MAX_PARTITIONS),
        replication_factor=replicas,
        min_insync_replicas=in_sync,
        retention_ms=_retention(t.table("retention_ms")),
    )
    t.finish()
    return cfg


def _optional_count(t: Table, name: str) -> int | None:
    return t.integer(name, 0, minimum=1, maximum=_MAX_REPLICAS) if t.has(name) else None


def _retention(t: Table) -> Mapping[str, int]:
    retention = dict(DEFAULT_RETENTION_MS)
    for name in t.names():
        if name in COMPACTED:
            raise t.error(name, "is compacted (the latest message per key is kept): retention does not apply")
        if name not in DEFAULT_RETENTION_MS:
            raise t.error(name, f"is not a topic of the contract ({', '.join(DEFAULT_RETENTION_MS)})")
        value = t.integer(name, -1, minimum=-1)
        if value == 0:
            raise t.error(name, "must be -1 (forever) or a positive number of milliseconds, got 0")
        retention[name] = value
    t.finish()
    return MappingProxyType(retention)
