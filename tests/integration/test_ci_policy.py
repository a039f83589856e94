"""The suite's skip policy, run on a tiny suite with the real conftest: one line locally, a failure in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]

SUITE = """
import pytest
from conftest import NO_JAVA
from prerequisites import unavailable

@pytest.mark.apache_kafka
def test_on_apache_kafka_without_java():
    unavailable(NO_JAVA)

@pytest.mark.apache_kafka
def test_on_apache_kafka_skipped_for_another_reason():
    pytest.skip("some other reason")

def test_elsewhere():
    pass
"""


def run_suite(tmp_path: Path, *, ci: bool, workers: int) -> tuple[int, str]:
    for name in ("conftest.py", "prerequisites.py", "xdist_groups.py"):
        shutil.copy(TESTS / name, tmp_path / name)
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    parallel = ["-n", str(workers), "--dist", "loadfile"] if workers else ["-p", "no:xdist"]
    pytest_args = ["-q", "-p", "no:cacheprovider", "-o", "markers=apache_kafka", *parallel, "."]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout


# 0: in the one pytest process; 2: under pytest-xdist (`make test`), where workers run the tests
# and the controller prints the summary.
WORKERS = pytest.mark.parametrize("workers", [0, 2])


@WORKERS
def test_without_java_the_apache_kafka_tests_skip_with_one_line_saying_how_to_run_them(
    tmp_path: Path, workers: int
) -> None:
    code, out = run_suite(tmp_path, ci=False, workers=workers)
    assert code == 0, out
    assert out.count("Java 17+") == 1, out
    assert (
        "\n1 apache_kafka tests skipped: they need Java 17+ (and Maven, once, to fetch the Kafka jars)" in out
    )
    assert "1 passed, 2 skipped" in out


@WORKERS
def test_in_ci_every_skipped_apache_kafka_test_is_a_failure(tmp_path: Path, workers: int) -> None:
    code, out = run_suite(tmp_path, ci=True, workers=workers)
    assert code == 1, out
    assert "2 failed, 1 passed" in out, out
