"""Apache Kafka only, as they test its launcher: a log file, a clear error without Java, no leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon import apache_kafka as launcher
from daemon.apache_kafka import ApacheKafka
from daemon.errors import EmbeddedBrokerError

pytestmark = [pytest.mark.integration, pytest.mark.apache_kafka]

REPO = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_the_broker_logs_into_its_log_file(apache_kafka: ApacheKafka) -> None:
    (log,) = apache_kafka.log_paths
    text = log.read_text()
    assert "Kafka Server started" in text  # log4j2 through SLF4J: the broker's own log lines
    assert "node.id = 1" in text


def test_without_java_start_is_a_clear_error_and_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "java_binary", lambda: None)
    with pytest.raises(
        EmbeddedBrokerError, match="needs Java 17\\+: apt-get install -y openjdk-17-jre-headless"
    ):
        ApacheKafka().start()


def test_a_cluster_its_process_forgot_to_stop_is_killed_when_the_process_exits(
    apache_kafka: ApacheKafka, tmp_path: Path
) -> None:
    """Started, then abandoned: the finalizer run at interpreter exit kills the broker's process group."""
    script = textwrap.dedent(
        f"""
        from daemon.apache_kafka import ApacheKafka
        cluster = ApacheKafka(log_dir={str(tmp_path)!r})
        cluster.start()
        print("PIDS", *(node.proc.pid for node in cluster._nodes), flush=True)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("PIDS ")]
    pids = [int(pid) for pid in line.split()[1:]]
    assert pids and not [pid for pid in pids if alive(pid)]
