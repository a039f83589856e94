"""The bench harness in tiny mode: every scenario runs end to end, so `make bench` cannot rot.

Nothing here asserts a timing: only that each scenario ran, measured what it
says, and reported it (peers whose package is not installed are skipped with
the reason, in tiny mode only). What runs on Apache Kafka (router_kafka's
Apache half, scaleout) is a second run, with the `apache_kafka` marker.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.kafka_jars import jar_dir, java_binary

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PEERS = {"c": "cryptofeed", "d": "ccxt"}


def assert_answered(statuses: dict[str, int], requests: int) -> None:
    """Every timed request was answered, most filled (a paper order on the simulator's moving book
    is sometimes `rejected:no_liquidity` or `partially_filled`: a market fact, not a bench fault)."""
    assert sum(statuses.values()) == requests
    assert statuses.get("filled", 0) >= requests // 2


def run_tiny(out: Path, *options: str) -> tuple[dict[str, Any], str, Path]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--tiny", "--out", str(out), *options],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    (json_file,) = out.glob("*.json")
    results: dict[str, Any] = orjson.loads(json_file.read_bytes())
    return results, done.stdout, out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    """Every scenario but scaleout, router_kafka on Tansu only."""
    only = "ingest,latency,router_kafka,isolation,reaction,memory"
    return run_tiny(tmp_path_factory.mktemp("bench"), "--only", only, "--brokers", "tansu")


@pytest.fixture(scope="module")
def tiny_apache_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """router_kafka and scaleout on Apache Kafka (skipped without Java, as every apache_kafka test)."""
    if java_binary() is None or (not jar_dir().is_dir() and shutil.which("mvn") is None):
        pytest.skip("needs Java 17+ (and Maven once, for the Kafka jars)")
    only = ("--only", "router_kafka,scaleout", "--brokers", "apache")
    results, _, _ = run_tiny(tmp_path_factory.mktemp("bench-apache"), *only)
    return results


def check_router_kafka(results: dict[str, Any], broker_name: str) -> None:
    """The router and both bare loops answered every request, with results of one size."""
    requests = results["settings"]["router_requests"]
    assert set(results["router_kafka"]["brokers"]) == {broker_name}
    broker = results["router_kafka"]["brokers"][broker_name]
    for round_ in broker["rounds"]:
        for loop in ("router", "bare", "bare_fetch"):
            assert_answered(round_[loop]["statuses"], requests)
            assert round_[loop]["p50_ms"] <= round_[loop]["p99_ms"]
        assert round_["bare"]["statuses"] == round_["bare_fetch"]["statuses"] == {"filled": requests}
        # The bare loops answer with results as long as the router's.
        assert round_["bare"]["result_bytes"] == round_["bare_fetch"]["result_bytes"]
        assert round_["bare"]["result_bytes"] == int(round_["router"]["result_bytes"])
    summary = broker["summary"]
    for loop in ("bare", "bare_fetch"):
        rate = summary["router"]["requests_per_s"] / summary[loop]["requests_per_s"]
        assert summary[f"router/{loop}"] == rate


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
    check_router_kafka(results, "tansu")
    memory = results["memory"]["summary"]
    assert memory["rss_start_mib"] > 0 and memory["tasks_start"] > 0 and memory["quotes_per_s"] > 0
    assert len(memory["samples"]) == 11


def test_isolation_times_opportunities_with_the_router_idle_and_loaded(
    tiny_run: tuple[dict[str, Any], str, Path],
) -> None:
    results, _, _ = tiny_run
    isolation = results["isolation"]["summary"]
    for phase in ("idle", "loaded"):
        figures = isolation[phase]
        # Nearly every dislocation sent in the phase opened an opportunity found again by its price
        # (in a full run on a busy machine, 0.5 % of the loaded phase's did not: they are left out).
        assert figures["dislocations"] > 10
        assert 0.9 * figures["dislocations"] <= figures["events"] <= figures["dislocations"]
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert isolation["ratio"] == isolation["loaded"]["p99_ms"] / isolation["idle"]["p99_ms"]
    assert isolation["loaded_requests_per_s"] > 0
    assert set(results["isolation"]["runs"][0]["statuses"]) == {"filled"}


def test_reaction_times_each_arbitrage_stage_by_stage_beside_the_kafka_round_trip(
    tiny_run: tuple[dict[str, Any], str, Path],
) -> None:
    results, _, _ = tiny_run
    run = results["reaction"]["runs"][0]
    timed = [r for r in run["requests"] if "orders_ns" in r]
    assert timed and run["unanswered"] == 0
    for r in timed:
        stamps = [r[key] for key in ("detected_ns", "read_ns", "sent_ns", "received_ns", "orders_ns")]
        assert stamps == sorted(stamps) and r["orders_ns"] <= r["completed_ns"]
    summary = results["reaction"]["summary"]
    assert summary["arbitrages"] == len(timed)
    for path in ("reaction", "router_part", "kafka_round_trip"):
        assert 0 < summary[path]["p50_ms"] <= summary[path]["p99_ms"]
    assert summary["router_part"]["p99_ms"] <= summary["reaction"]["p99_ms"]


@pytest.mark.apache_kafka
def test_router_kafka_measures_router_and_bare_loops_on_apache_kafka(tiny_apache_run: dict[str, Any]) -> None:
    check_router_kafka(tiny_apache_run, "apache")


@pytest.mark.apache_kafka
def test_scaleout_runs_one_then_two_routers_in_one_group_and_reports_their_cpu(
    tiny_apache_run: dict[str, Any],
) -> None:
    results = tiny_apache_run
    (round_,) = results["scaleout"]["rounds"]
    for routers in ("1", "2"):
        run = round_[routers]
        assert run["routers"] == int(routers)
        assert run["ledger"].startswith("postgresql://")  # one ledger for the group, as deployed
        assert_answered(run["statuses"], results["settings"]["router_requests"])
        assert len(run["router_cpu_s"]) == int(routers) and all(cpu >= 0 for cpu in run["router_cpu_s"])
    summary = results["scaleout"]["summary"]
    assert summary["ratio"] == round_["2"]["requests_per_s"] / round_["1"]["requests_per_s"]


def test_the_printed_table_is_the_markdown_written_beside_the_json(
    tiny_run: tuple[dict[str, Any], str, Path],
) -> None:
    results, stdout, out = tiny_run
    (markdown,) = out.glob("*.md")
    table = markdown.read_text()
    assert table in stdout
    headings = ("**Ingest**", "**Detector latency**", "**Router through Kafka**", "**Feed isolation**")
    for heading in (*headings, "**Reaction time**", "**Memory**"):
        assert heading in table
    assert results["machine"]["cores"] and results["machine"]["python"] in table
