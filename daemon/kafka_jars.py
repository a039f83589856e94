"""The Apache Kafka jars for `daemon.apache_kafka`: fetched once by Maven into a cache outside the repository.

    jars = ensure_jars()          # ~/.cache/smartroute/kafka-4.1.1/jars, fetched on first use
    classpath = f"{jars}/*"

    python -m daemon.kafka_jars   # fetch now (.ci/run), print the directory

The cache directory is `$SMARTROUTE_CACHE` or `$XDG_CACHE_HOME/smartroute` (default
`~/.cache/smartroute`), shared by every clone and run. Maven downloads into a temporary
directory beside the cache, which is renamed into place only once complete: a half-fetched
cache is never used, and two processes fetching at once both end with a whole one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

import structlog

from daemon.errors import EmbeddedBrokerError

log = structlog.get_logger(__name__)

KAFKA_VERSION: Final = "4.1.1"
LOG4J_VERSION: Final = "2.24.3"
_FETCH_TIMEOUT_S: Final = 900.0
_JARS: Final = "jars"
# The broker and its tools; log4j-slf4j-impl routes Kafka's SLF4J 1.7 logging into log4j2, whose
# configuration `daemon.apache_kafka` writes (a log file per broker).
_DEPENDENCIES: Final = (
    ("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
    ("org.apache.kafka", "kafka-tools", KAFKA_VERSION),
    ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
    ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
)


def cache_root() -> Path:
    """Return smartroute's cache directory (created on demand, never inside a repository)."""
    explicit = os.environ.get("SMARTROUTE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "smartroute"


def jar_dir(version: str = KAFKA_VERSION) -> Path:
    """Return where the jars of Kafka `version` live once fetched."""
    return cache_root() / f"kafka-{version}" / _JARS


def java_binary() -> str | None:
    """Return the `java` on PATH (or under $JAVA_HOME), None if there is none."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def ensure_jars() -> Path:
    """Return the jar directory, fetching it with Maven first if it is not cached yet."""
    target = jar_dir()
    if target.is_dir():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EmbeddedBrokerError(
            f"the Apache Kafka jars are not cached in {target} and Maven is not installed to fetch "
            "them: apt-get install -y maven (.ci/run does this)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as work:
        staged = Path(work) / _JARS
        _fetch(mvn, Path(work), staged)
        try:
            staged.rename(target)  # atomic: the cache appears whole or not at all
        except OSError:
            if not target.is_dir():  # else another process won the race with an equal copy
                raise
    log.info("kafka_jars_fetched", version=KAFKA_VERSION, path=str(target))
    return target


def _fetch(mvn: str, work: Path, staged: Path) -> None:
    (work / "pom.xml").write_text(_pom(), encoding="utf-8")
    log.info("kafka_jars_fetching", version=KAFKA_VERSION, into=str(staged.parent))
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(work / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staged}",
        "-DincludeScope=runtime",
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_FETCH_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise EmbeddedBrokerError(f"Maven did not fetch the Kafka jars within {_FETCH_TIMEOUT_S} s") from exc
    if result.returncode != 0 or not any(staged.glob("kafka_2.13-*.jar")):
        output = (result.stdout + result.stderr).strip().splitlines()[-20:]
        raise EmbeddedBrokerError(
            f"Maven could not fetch the Apache Kafka {KAFKA_VERSION} jars (exit code "
            f"{result.returncode}):\n" + "\n".join(output)
        )


def _pom() -> str:
    dependencies = "".join(
        f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version></dependency>"
        for group, artifact, version in _DEPENDENCIES
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>smartroute</groupId><artifactId>kafka-jars</artifactId><version>1</version>"
        f"<packaging>pom</packaging><dependencies>{dependencies}</dependencies></project>"
    )


if __name__ == "__main__":  # `.ci/run`: fetch the jars ahead of the tests
    sys.stdout.write(f"{ensure_jars()}\n")
