"""The bench harness in tiny mode: every scenario runs end to end, so `make bench` cannot rot.

Nothing here asserts a timing: only that each scenario ran, measured what it
says, and reported it (peers whose package is not installed are skipped with
the reason, in tiny mode only).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PEERS = {"c": "cryptofeed", "d": "ccxt"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--tiny", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    (json_file,) = out.glob("*.json")
    results: dict[str, Any] = orjson.loads(json_file.read_bytes())
    return results, done.stdout, out


def test_every_ingest_client_read_every_frame_in_each_interleaved_round(
    tiny_run: tuple[dict[str, Any], str, Path],
) -> None:
    results, _, _ = tiny_run
    ingest, frames = results["ingest"], results["settings"]["frames"]
    assert len(ingest["rounds"]) == results["settings"]["runs"] == 2
    ran = set(ingest["rounds"][0])
    assert {"a", "a_raw", "a_http", "b"} <= ran
    for round_ in ingest["rounds"]:
        assert set(round_) == ran
        for result in round_.values():
            assert result["messages"] == frames and result["msgs_per_s"] > 0
    assert set(ingest["median_msgs_per_s"]) == ran
    assert "b/a" in ingest["ratios"] and "b/a_http" in ingest["ratios"]


def test_a_peer_is_measured_when_installed_and_skipped_with_the_reason_when_not(
    tiny_run: tuple[dict[str, Any], str, Path],
) -> None:
    results, stdout, _ = tiny_run
    ingest = results["ingest"]
    for client, package in PEERS.items():
        ratio = f"b/{client}"
        if importlib.util.find_spec(package) is None:
            assert package in ingest["skipped"][client] and ratio not in ingest["ratios"]
            assert f"skipped: {package} not installed" in stdout
        else:
            assert client in ingest["rounds"][0] and ratio in ingest["ratios"]


def test_latency_router_and_memory_scenarios_report_what_they_measured(
    tiny_run: tuple[dict[str, Any], str, Path],
) -> None:
    results, _, _ = tiny_run
    latency = results["latency"]["summary"]
    assert latency["events"] > 0 and latency["quotes"] == results["settings"]["latency_quotes"]
    assert latency["p50_us"] <= latency["p99_us"] <= latency["p999_us"] <= latency["max_us"]
    router = results["router"]["summary"]
    for run in results["router"]["runs"]:
        assert run["statuses"] == {"filled": results["settings"]["router_requests"]}
    assert router["p50_ms"] <= router["p99_ms"]
    memory = results["memory"]["summary"]
    assert memory["rss_start_mib"] > 0 and memory["tasks_start"] > 0 and memory["quotes_per_s"] > 0
    assert len(memory["samples"]) == 11


def test_the_printed_table_is_the_markdown_written_beside_the_json(
    tiny_run: tuple[dict[str, Any], str, Path],
) -> None:
    results, stdout, out = tiny_run
    (markdown,) = out.glob("*.md")
    table = markdown.read_text()
    assert table in stdout
    for heading in ("**Ingest**", "**Detector latency**", "**Router**", "**Memory**"):
        assert heading in table
    assert results["machine"]["cores"] and results["machine"]["python"] in table
