"""The contract's topics on a cluster: `smartroute topics create|check`, and the daemon's start-up check.

    report = await create_topics(kafka, topics)   # create what is missing; compare what exists
    report = await check_topics(kafka, topics)    # compare only: changes nothing
    await require_topics(kafka, names)            # TopicsMissing naming each absent topic

`kafka` is the `[kafka]` section (connection, topic prefix), `topics` the `[topics]` one.

Production clusters do not auto-create topics. A process that needs a missing topic stops at
start with `TopicsMissing`, naming every missing topic and the command that creates them, rather
than waiting or retrying silently. That check asks for the topics' metadata as a producer does,
so a broker that auto-creates topics (Tansu, the embedded test broker) creates them then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code

from daemon.config import KafkaConfig, TopicsConfig
from daemon.config.topics import COMPACTED, CONTRACT_TOPICS, SINGLE_PARTITION
from daemon.errors import KafkaUnavailable, TopicsMissing
from daemon.kafka.access import principal, unreachable
from daemon.kafka.settings import client_options

log = structlog.get_logger(__name__)

_NO_ERROR: Final = 0
_UNKNOWN_TOPIC: Final = 3
_ALREADY_EXISTS: Final = 36
_AUTHORIZATION_FAILED: Final = frozenset({29, 31})  # TOPIC_ / CLUSTER_AUTHORIZATION_FAILED
_MAX_DEFAULT_REPLICAS: Final = 3
_USABLE_POLL_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as the config wants it."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(slots=True)
class TopicState:
    """What `create` or `check` found for one topic: `status` is ok, created, missing, differs or error."""

    spec: TopicSpec
    status: str
    details: list[str] = field(default_factory=list)

    def line(self) -> str:
        """Return the report line for this topic."""
        text = f"{self.status:<8} {self.spec.name}"
        return text + (": " + "; ".join(self.details) if self.details else "")


def topic_specs(kafka: KafkaConfig, t: TopicsConfig, brokers: int) -> list[TopicSpec]:
    """Return the contract's topics as `[topics]` asks for them, on a cluster of `brokers` brokers."""
    replicas = t.replication_factor or min(_MAX_DEFAULT_REPLICAS, max(brokers, 1))
    in_sync = t.min_insync_replicas or max(1, replicas - 1)
    specs = []
    for name in CONTRACT_TOPICS:
        configs = {"min.insync.replicas": str(in_sync)}
        if name in COMPACTED:
            configs["cleanup.policy"] = "compact"
        else:
            configs["cleanup.policy"] = "delete"
            configs["retention.ms"] = str(t.retention_ms[name])
        partitions = 1 if name in SINGLE_PARTITION else t.partitions
        specs.append(TopicSpec(kafka.topic(name), partitions, replicas, configs))
    return specs


class _Admin:
    """An aiokafka admin client with the daemon's connection settings, mapping errors to ours."""

    def __init__(self, cfg: KafkaConfig) -> None:
        self._cfg = cfg
        self._client = AIOKafkaAdminClient(**client_options(cfg))

    async def __aenter__(self) -> _Admin:
        try:
            await self._client.start()
        except KafkaConnectionError as exc:
            await self._client.close()
            raise await unreachable(self._cfg, client_options(self._cfg), exc) from exc
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._client.close()

    async def brokers(self) -> int:
        cluster = await self._client.describe_cluster()
        return len(cluster["brokers"])

    async def existing(self) -> set[str]:
        """Return the names of every topic (a metadata request for all: it creates nothing)."""
        return set(await self._client.list_topics())

    async def describe(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Return each topic's metadata; asking for a missing topic creates it where auto-creation is on."""
        return {t["topic"]: t for t in await self._client.describe_topics(list(names))}

    async def wait_usable(self, names: Sequence[str]) -> None:
        """Wait (within the request timeout) until every partition of `names` has a leader.

        A broker learns of a new topic shortly after the controller created it; until then
        clients see it as missing.
        """
        deadline = time.monotonic() + self._cfg.request_timeout_ms / 1000
        pending = list(names)
        while pending and time.monotonic() < deadline:
            described = await self.describe(pending)
            pending = [name for name in pending if not _led(described.get(name))]
            if pending:
                await asyncio.sleep(_USABLE_POLL_S)  # the broker offers no event to wait on
        if pending:
            log.warning("kafka_topics_not_yet_usable", topics=pending)

    async def configs(self, names: Sequence[str]) -> dict[str, tuple[int, dict[str, str]]]:
        """Return (error code, config values) per topic."""
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        found: dict[str, tuple[int, dict[str, str]]] = {}
        for response in await self._client.describe_configs(resources):
            for resource in response.to_object()["resources"]:
                values = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
                found[resource["resource_name"]] = (resource["error_code"], values)
        return found

    async def create(self, specs: Sequence[TopicSpec]) -> dict[str, tuple[int, str | None]]:
        """Create `specs`; return (error code, broker message) per topic."""
        new = [
            NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs)) for s in specs
        ]
        response = await self._client.create_topics(new)
        return {
            e["topic"]: (e["error_code"], e["error_message"]) for e in response.to_object()["topic_errors"]
        }


async def create_topics(kafka: KafkaConfig, topics: TopicsConfig) -> list[TopicState]:
    """Create every missing topic of the contract; compare the existing ones with the config."""
    async with _Admin(kafka) as admin:
        specs = topic_specs(kafka, topics, await admin.brokers())
        existing = await admin.existing()
        missing = [s for s in specs if s.name not in existing]
        created = await admin.create(missing) if missing else {}
        states = {s.name: _created(s, *created.get(s.name, (_NO_ERROR, None))) for s in missing}
        await admin.wait_usable([name for name, state in states.items() if state.status == "created"])
        present = [s for s in specs if s.name in existing]
        states.update({st.spec.name: st for st in await _compare(admin, present)})
    return [states[s.name] for s in specs]


def _led(metadata: dict[str, Any] | None) -> bool:
    if metadata is None or metadata["error_code"] != _NO_ERROR or not metadata["partitions"]:
        return False
    return all(p["error_code"] == _NO_ERROR and p["leader"] >= 0 for p in metadata["partitions"])


def _created(spec: TopicSpec, code: int, message: str | None) -> TopicState:
    if code in (_NO_ERROR, _ALREADY_EXISTS):  # already exists: created by someone else meanwhile
        return TopicState(spec, "created")
    return TopicState(spec, "error", [_refusal("create", spec.name, code, message)])


def _refusal(action: str, topic: str, code: int, message: str | None, acl: str = "CREATE") -> str:
    error = for_code(code)
    text = f"the broker refused to {action} {topic}: {error.__name__} ({message or error.description})"
    if code in _AUTHORIZATION_FAILED:
        text += (
            f"; this client's principal needs the {acl} ACL on topic {topic} "
            "(or have an administrator run `smartroute topics create`)"
        )
    return text


async def check_topics(kafka: KafkaConfig, topics: TopicsConfig) -> list[TopicState]:
    """Compare every topic of the contract with the config, changing nothing."""
    async with _Admin(kafka) as admin:
        specs = topic_specs(kafka, topics, await admin.brokers())
        existing = await admin.existing()
        compared = {
            st.spec.name: st for st in await _compare(admin, [s for s in specs if s.name in existing])
        }
    return [compared.get(s.name) or TopicState(s, "missing") for s in specs]


async def _compare(admin: _Admin, specs: Sequence[TopicSpec]) -> list[TopicState]:
    if not specs:
        return []
    names = [s.name for s in specs]
    metadata = await admin.describe(names)
    configs = await admin.configs(names)
    return [_differences(s, metadata.get(s.name), configs.get(s.name)) for s in specs]


def _differences(
    spec: TopicSpec, metadata: dict[str, Any] | None, configs: tuple[int, dict[str, str]] | None
) -> TopicState:
    details: list[str] = []
    if metadata is None or metadata["error_code"] != _NO_ERROR:
        code = _UNKNOWN_TOPIC if metadata is None else metadata["error_code"]
        return TopicState(spec, "error", [_refusal("describe", spec.name, code, None, "DESCRIBE")])
    partitions = metadata["partitions"]
    if len(partitions) != spec.partitions:
        details.append(f"partitions is {len(partitions)}, the config says {spec.partitions}")
    replicas = sorted({len(p["replicas"]) for p in partitions})
    if replicas != [spec.replication_factor]:
        shown = ",".join(map(str, replicas))
        details.append(f"replication factor is {shown}, the config says {spec.replication_factor}")
    code, values = configs if configs is not None else (_UNKNOWN_TOPIC, {})
    if code != _NO_ERROR:
        return TopicState(
            spec,
            "error",
            [*details, _refusal("describe the configs of", spec.name, code, None, "DESCRIBE_CONFIGS")],
        )
    for key, wanted in spec.configs.items():
        if values.get(key) != wanted:
            details.append(f"{key} is {values.get(key)}, the config says {wanted}")
    return TopicState(spec, "differs" if details else "ok", details)


async def require_topics(cfg: KafkaConfig, names: Iterable[str]) -> None:
    """Raise TopicsMissing naming every topic of `names` the cluster does not have (and will not create)."""
    wanted = sorted(set(names))
    if not wanted:
        return
    try:
        async with _Admin(cfg) as admin:
            found = await admin.describe(wanted)
    except KafkaError as exc:
        raise KafkaUnavailable(f"could not read the metadata of topics {', '.join(wanted)}: {exc!r}") from exc
    codes = {n: found[n]["error_code"] if n in found else _UNKNOWN_TOPIC for n in wanted}
    missing = [n for n, code in codes.items() if code == _UNKNOWN_TOPIC]
    if missing:
        log.error("kafka_topics_missing", topics=missing)
        raise TopicsMissing(
            f"Kafka topic(s) missing: {', '.join(missing)} (this cluster does not create topics on use); "
            "create them with `smartroute topics create --config <this config file>`"
        )
    denied = [n for n, code in codes.items() if code in _AUTHORIZATION_FAILED]
    if denied:
        raise TopicsMissing(
            f"not authorized to read the metadata of Kafka topic(s) {', '.join(denied)}: "
            f"{principal(cfg)} needs the DESCRIBE ACL on them"
        )
