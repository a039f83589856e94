"""`make test`'s scheduling (tests/xdist_groups.py), on a tiny suite with the real conftest and 3 workers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]

FIRST = """
import pytest

@pytest.mark.apache_kafka
@pytest.mark.parametrize("i", range(4))
def test_on_kafka(i):
    pass

@pytest.mark.parametrize("i", range(4))
def test_elsewhere(i):
    pass
"""

SECOND = """
import pytest

@pytest.fixture(params=["tansu", pytest.param("apache_kafka", marks=pytest.mark.apache_kafka)])
def broker(request):
    return request.param

def test_on_both(broker):
    pass

@pytest.mark.parametrize("i", range(4))
def test_here(i):
    pass
"""


def test_every_apache_kafka_test_runs_on_one_worker_and_every_other_file_on_one(tmp_path: Path) -> None:
    for name in ("conftest.py", "prerequisites.py", "xdist_groups.py"):
        shutil.copy(TESTS / name, tmp_path / name)
    (tmp_path / "test_first.py").write_text(FIRST)
    (tmp_path / "test_second.py").write_text(SECOND)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    pytest_args = [
        "-v",
        "-p",
        "no:cacheprovider",
        "-o",
        "markers=apache_kafka",
        "-n",
        "3",
        "--dist",
        "loadfile",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args, "."],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    workers: dict[str, set[str]] = defaultdict(set)  # a group of tests -> the workers that ran them
    for worker, nodeid in re.findall(r"^\[(gw\d)\] \[ *\d+%\] PASSED (\S+)", result.stdout, re.M):
        kafka = "on_kafka" in nodeid or "apache_kafka" in nodeid
        workers["kafka" if kafka else nodeid.split("::")[0]].add(worker)
    assert sum(1 for line in result.stdout.splitlines() if " PASSED " in line) == 14, result.stdout
    assert {group: len(ran) for group, ran in workers.items()} == {
        "kafka": 1,
        "test_first.py": 1,
        "test_second.py": 1,
    }, result.stdout
