"""How `make test` spreads the suite over pytest-xdist workers (`-n 3 --dist loadfile`).

Each test file goes to one worker whole, as with pytest-xdist's own `loadfile` (its module-scoped
fixtures start once), except that every test on Apache Kafka (marker `apache_kafka`, or the
`apache_kafka`/`secure_kafka` fixture) goes to one worker together: that worker alone starts the
session's JVM brokers (seconds each, about a gigabyte of memory).

pytest-xdist's `--dist loadgroup` with `xdist_group` marks would say the same, but it does not
group on pytest 9.2 (pytest-dev/pytest-xdist#1386: it renames node ids, which pytest no longer
allows), so the controller learns the group from the workers instead: each worker writes the
ids of its Apache Kafka tests to a file once it has collected them, and the scheduler reads them
before it hands out the first test.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

GROUP = "apache_kafka"
KAFKA_FIXTURES = frozenset({"apache_kafka", "secure_kafka"})
_GROUPS_DIR = pytest.StashKey[Path]()
_WORKER_INPUT = "smartroute_groups_dir"


def on_apache_kafka(item: pytest.Item) -> bool:
    """Return True for a test on Apache Kafka: its marker, or a broker fixture."""
    fixtures = set(getattr(item, "fixturenames", ()))
    return item.get_closest_marker("apache_kafka") is not None or bool(KAFKA_FIXTURES & fixtures)


class KafkaGroupScheduling(LoadScopeScheduling):
    """`loadfile`, except that the Apache Kafka tests the workers listed are one unit of work."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self.groups_dir = groups_dir(config)
        self.grouped: frozenset[str] = frozenset()

    def schedule(self) -> None:
        """Read the workers' lists of Apache Kafka tests, then hand out work as `loadfile` does."""
        if self.collection is None:  # the first call: every worker has collected (and written)
            self.grouped = frozenset(
                nodeid for path in self.groups_dir.glob("*.json") for nodeid in json.loads(path.read_text())
            )
        super().schedule()

    def _split_scope(self, nodeid: str) -> str:
        return GROUP if nodeid in self.grouped else nodeid.split("::", 1)[0]


def groups_dir(config: pytest.Config) -> Path:
    """Return the directory of the workers' lists, made on first use (in the controller)."""
    if _GROUPS_DIR not in config.stash:
        config.stash[_GROUPS_DIR] = Path(tempfile.mkdtemp(prefix="smartroute-xdist-"))
    return config.stash[_GROUPS_DIR]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Tell a worker of a `--dist loadfile` run where to list its Apache Kafka tests (in the controller)."""
    if node.config.getoption("dist") == "loadfile":
        node.workerinput[_WORKER_INPUT] = str(groups_dir(node.config))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> KafkaGroupScheduling | None:
    """Under `--dist loadfile`, schedule with the Apache Kafka tests grouped (in the controller)."""
    if config.getoption("dist") != "loadfile":
        return None
    return KafkaGroupScheduling(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Delete the workers' lists (in the controller of a grouped run)."""
    if _GROUPS_DIR in config.stash:
        shutil.rmtree(config.stash[_GROUPS_DIR], ignore_errors=True)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reports the collection to the controller
def pytest_collection_finish(session: pytest.Session) -> None:
    """In a worker of a grouped run, write the ids of the collected Apache Kafka tests."""
    workerinput: dict[str, Any] | None = getattr(session.config, "workerinput", None)
    if workerinput is None or _WORKER_INPUT not in workerinput:
        return
    grouped = [item.nodeid for item in session.items if on_apache_kafka(item)]
    path = Path(workerinput[_WORKER_INPUT]) / f"{workerinput['workerid']}.json"
    path.write_text(json.dumps(grouped))
