"""The deploy/ kit, checked by the tools an operator runs: systemd-analyze, promtool, a real Prometheus.

These tools are installed by `.ci/run` (Debian packages `systemd` and `prometheus`). A test whose
tool is missing is skipped with the command that installs it, and fails instead in CI (CI=true),
where every one of them must run.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kafka_support import create_daemon_topics
from prerequisites import unavailable

from connectors.sim import ExchangeSimulator
from daemon.app import Daemon
from daemon.config import DaemonConfig, load_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "smartroute.service"
UNIT_EXEC = "/usr/local/bin/smartroute"
MAX_EXPOSURE = 3.0
ALERTS = {
    "SmartrouteDown",
    "SmartrouteRestartLoop",
    "SmartrouteFeedStale",
    "SmartrouteAllFeedsStale",
    "SmartrouteReconnectStorm",
    "SmartrouteParseErrors",
    "SmartrouteKafkaProduceErrors",
    "SmartrouteKafkaMessagesDropped",
    "SmartrouteKafkaBacklog",
    "SmartrouteHalted",
    "SmartrouteDailyLossHalt",
    "SmartrouteBalanceDrift",
    "SmartrouteOrderRejects",
    "SmartrouteOrderFailures",
    "SmartrouteUnknownVenueOrders",
    "SmartrouteOpenOrdersUnchecked",
    "SmartrouteResidualHalt",
    "SmartrouteResidualOpen",
    "SmartrouteRequestsUnsettled",
    "SmartrouteLedgerLeasesNotRenewed",
}


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(
            f"{name} is not installed; install it with `apt-get install -y {package}` "
            "(.ci/run does this on a fresh machine)"
        )
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


# ── the systemd unit ───────────────────────────────────────────────────────────


def unit_copy(tmp_path: Path, text: str | None = None) -> Path:
    """Write the unit (or `text`) as smartroute.service, its ExecStart pointing at the installed script.

    The shipped unit runs /usr/local/bin/smartroute, where INSTALL.md puts it; `verify` checks that
    the binary exists, so the copy points at the console script of the Python running the tests.
    """
    script = Path(sys.executable).with_name("smartroute")
    if not script.exists():
        pytest.fail(f"no smartroute console script next to {sys.executable}: run `pip install -e .`")
    content = UNIT.read_text() if text is None else text
    assert UNIT_EXEC in content, f"the unit's ExecStart no longer runs {UNIT_EXEC}"
    path = tmp_path / "smartroute.service"
    path.write_text(content.replace(UNIT_EXEC, str(script)))
    return path


def verify_problems(unit: Path) -> list[str]:
    """Return what `systemd-analyze verify` reports; it exits 0 on unknown keys, so output counts too."""
    result = run(tool("systemd-analyze", "systemd"), "verify", str(unit))
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0:
        problems.append(f"exit status {result.returncode}")
    return problems


def exposure(unit: Path) -> float:
    """Return the 'Overall exposure level' that `systemd-analyze security --offline=yes` gives the unit."""
    result = run(tool("systemd-analyze", "systemd"), "security", "--offline=yes", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, f"no exposure level in the output:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1))


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert verify_problems(unit_copy(tmp_path)) == []


def test_verify_would_catch_a_misspelt_directive(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    problems = verify_problems(unit_copy(tmp_path, broken))
    assert any("ProtectSytem" in line for line in problems), problems


def test_the_unit_is_hardened_to_an_exposure_of_at_most_3(tmp_path: Path) -> None:
    level = exposure(unit_copy(tmp_path))
    assert level <= MAX_EXPOSURE, f"systemd-analyze security rates the unit {level} > {MAX_EXPOSURE}"


def test_the_exposure_check_sees_an_unhardened_unit(tmp_path: Path) -> None:
    bare = f"[Service]\nType=notify\nExecStart={UNIT_EXEC} run\n"
    assert exposure(unit_copy(tmp_path, bare)) > MAX_EXPOSURE


def test_the_unit_declares_notify_watchdog_credentials_and_a_bounded_stop() -> None:
    found = directives(UNIT.read_text())
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "DynamicUser": ["yes"],
        "ProtectSystem": ["strict"],
        "StateDirectory": ["smartroute"],
        "NoNewPrivileges": ["yes"],
        "Restart": ["on-failure"],
        "RestartPreventExitStatus": ["78"],  # the CLI's exit status for a bad config
    }
    assert {key: found.get(key) for key in expected} == expected
    # The names daemon/config.py and daemon/credentials.py read from $CREDENTIALS_DIRECTORY.
    credentials = ["kafka_sasl_password", "binance_api_key", "binance_api_secret", "binance_private_key"]
    assert found["LoadCredential"] == credentials
    assert found["WatchdogSec"] == ["30s"]
    stop_s = int(found["TimeoutStopSec"][0].removesuffix("s"))
    # The daemon's own drain bound must end well before systemd's SIGKILL.
    assert DaemonConfig().shutdown_timeout_ms / 1000 * 2 <= stop_s


# ── Prometheus rules and config ────────────────────────────────────────────────


def test_promtool_accepts_the_alert_rules() -> None:
    result = run(tool("promtool", "prometheus"), "check", "rules", str(DEPLOY / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_accepts_the_scrape_config_with_its_rule_file() -> None:
    result = run(tool("promtool", "prometheus"), "check", "config", str(DEPLOY / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in {"job": "smartroute", **labels}.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def expect(summary: str, description: str, **labels: str) -> dict[str, Any]:
    annotations = {"summary": summary, "description": description}
    return {"exp_labels": {"job": "smartroute", **labels}, "exp_annotations": annotations}


def fired(alert: str, at: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": list(alerts)}


def silent(alert: str, at: str) -> dict[str, Any]:
    return fired(alert, at)


LAST_FRAME = "smartroute_ws_last_message_timestamp_seconds"
ORDERS = "smartroute_order_requests_total"
PRODUCE_ERRORS = "smartroute_kafka_produce_errors_total"
STALE = "No frame from {} for more than a minute: its prices are left out of every decision."

ALERT_CASES: list[dict[str, Any]] = [
    {  # a: bybit stops at 2 min while binance keeps up; b: its only feed never sent a frame
        "interval": "1m",
        "input_series": [
            series(LAST_FRAME, "0+60x15", instance="a", venue="binance"),
            series(LAST_FRAME, "0+60x2 120x12", instance="a", venue="bybit"),
            series(LAST_FRAME, "0x15", instance="b", venue="binance"),
        ],
        "alert_rule_test": [
            silent("SmartrouteFeedStale", "3m"),  # 60 s old: not yet stale
            silent("SmartrouteAllFeedsStale", "1m"),  # stale, but not for 1 minute yet
            fired(
                "SmartrouteFeedStale",
                "6m",  # stale since 4 min, for 2 min
                expect("smartroute feed bybit on a is stale", STALE.format("bybit"),
                       instance="a", venue="bybit", severity="warning"),
                expect("smartroute feed binance on b is stale", STALE.format("binance"),
                       instance="b", venue="binance", severity="warning"),
            ),
            fired(
                "SmartrouteAllFeedsStale",
                "6m",
                expect("every smartroute feed on b is stale",
                       "No venue delivered a frame for more than a minute: nothing can be detected or "
                       "routed, /readyz answers 503.",
                       instance="b", severity="critical"),
            ),
        ],
    },
    {  # 2 reconnects a minute on bybit: 20 in 10 minutes
        "interval": "1m",
        "input_series": [
            series("smartroute_ws_reconnects_total", "0+2x15", instance="a", venue="bybit", reason="error"),
            series("smartroute_ws_reconnects_total", "0x15", instance="a", venue="binance", reason="error"),
        ],
        "alert_rule_test": [
            fired(
                "SmartrouteReconnectStorm",
                "12m",
                expect("smartroute feed bybit on a reconnects again and again",
                       "More than 10 reconnects in 10 minutes: the venue is flapping, rate-limiting us, "
                       "or the network is lossy.",
                       instance="a", venue="bybit", severity="warning"),
            ),
        ],
    },
    {  # one produce error at 3 min: alerts for the next 5 minutes, then clears
        "interval": "1m",
        "input_series": [
            series(PRODUCE_ERRORS, "0 0 0 1x10", instance="a", topic="t.opportunities"),
        ],
        "alert_rule_test": [
            silent("SmartrouteKafkaProduceErrors", "2m"),
            fired(
                "SmartrouteKafkaProduceErrors",
                "4m",
                expect("smartroute on a fails to produce to t.opportunities",
                       "Kafka refused messages or their delivery failed; each failed batch is logged "
                       "once (event kafka_delivery_failed) with its message count and first key.",
                       instance="a", topic="t.opportunities", severity="critical"),
            ),
            silent("SmartrouteKafkaProduceErrors", "10m"),
        ],
    },
    {  # halted from 2 min on
        "interval": "1m",
        "input_series": [series("smartroute_halted", "0 0 1x5", instance="a")],
        "alert_rule_test": [
            silent("SmartrouteHalted", "1m"),
            fired(
                "SmartrouteHalted",
                "3m",
                expect("smartroute on a is halted: no order is executed",
                       "The kill switch is on (a halt on the control topic, or the daily loss "
                       "limit). It stays on across restarts until a resume.",
                       instance="a", severity="warning"),
            ),
        ],
    },
    {  # a: today's loss passes the floor at 2 min and halts; b: halted by hand, no loss;
       # c: a loss past the floor, but an operator resumed (the floor moved down with the resume)
        "interval": "1m",
        "input_series": [
            series("smartroute_realized_pnl_today", "-10 -30 -50.35x5", instance="a"),
            series("smartroute_loss_halt_floor", "-50x7", instance="a"),
            series("smartroute_halted", "0 0 1x5", instance="a"),
            series("smartroute_realized_pnl_today", "0x7", instance="b"),
            series("smartroute_loss_halt_floor", "-50x7", instance="b"),
            series("smartroute_halted", "1x7", instance="b"),
            series("smartroute_realized_pnl_today", "-60x7", instance="c"),
            series("smartroute_loss_halt_floor", "-110x7", instance="c"),
            series("smartroute_halted", "0x7", instance="c"),
        ],
        "alert_rule_test": [
            silent("SmartrouteDailyLossHalt", "1m"),
            fired(
                "SmartrouteDailyLossHalt",
                "3m",
                expect("smartroute on a halted itself: today's realized loss passed max_daily_loss",
                       "Realized PnL of the UTC day is -50.35 (valuation currency), below its floor; "
                       "nothing is executed until an operator resumes, which allows another "
                       "max_daily_loss of loss today.",
                       instance="a", severity="critical"),
            ),
        ],
    },
    {  # one drift of okx USDT at 3 min: alerts for the next 15 minutes
        "interval": "1m",
        "input_series": [
            series("smartroute_balance_drift_total", "0 0 0 1x20", instance="a", venue="okx", asset="USDT"),
            series("smartroute_balance_drift_total", "0x20", instance="a", venue="okx", asset="BTC"),
        ],
        "alert_rule_test": [
            silent("SmartrouteBalanceDrift", "2m"),
            fired(
                "SmartrouteBalanceDrift",
                "5m",
                expect("smartroute on a: the okx USDT balance is not what the router expects",
                       "A live balance read differed from the router's expected balance by more than "
                       "balance_tolerance_bps (event balance_drift; /status lists both figures). Funds "
                       "moved outside the router, or a fill was missed.",
                       instance="a", venue="okx", asset="USDT", severity="critical"),
            ),
        ],
    },
    {  # a: 30% rejected for stale prices; b: every reject is a halt, which has its own alert
        "interval": "1m",
        "input_series": [
            series(ORDERS, "0+3x20", instance="a", status="rejected", reject_code="stale_prices"),
            series(ORDERS, "0+7x20", instance="a", status="filled", reject_code=""),
            series(ORDERS, "0+3x20", instance="b", status="rejected", reject_code="halted"),
            series(ORDERS, "0+7x20", instance="b", status="filled", reject_code=""),
        ],
        "alert_rule_test": [
            silent("SmartrouteOrderRejects", "4m"),  # not yet for 5 minutes
            fired(
                "SmartrouteOrderRejects",
                "12m",
                expect("over 20% of order requests to smartroute on a are rejected",
                       "See smartroute_order_requests_total by reject_code: stale prices, risk limits "
                       "or bad requests.",
                       instance="a", severity="warning"),
            ),
        ],
    },
    {  # a: a hand-placed order on okx from 2 min to 5 min; binance stays clean
        "interval": "1m",
        "input_series": [
            series("smartroute_unknown_venue_orders", "0 0 1 1 1 0 0", instance="a", venue="okx"),
            series("smartroute_unknown_venue_orders", "0x6", instance="a", venue="binance"),
        ],
        "alert_rule_test": [
            silent("SmartrouteUnknownVenueOrders", "1m"),
            fired(
                "SmartrouteUnknownVenueOrders",
                "3m",
                expect("1 open order(s) at okx that smartroute on a did not place",
                       "The venue lists open orders the router's ledger does not know (log event "
                       "unknown_venue_order, /status unknown_venue_orders). They hold funds and may "
                       "fill; smartroute never cancels them: check who placed them.",
                       instance="a", venue="okx", severity="warning"),
            ),
            silent("SmartrouteUnknownVenueOrders", "6m"),
        ],
    },
    {  # kraken's open orders cannot be listed: a failed check every 5 minutes from the start
        "interval": "5m",
        "input_series": [
            series("smartroute_open_orders_check_failures_total", "0+1x8", instance="a", venue="kraken"),
            series("smartroute_open_orders_check_failures_total", "0x8", instance="a", venue="okx"),
        ],
        "alert_rule_test": [
            silent("SmartrouteOpenOrdersUnchecked", "5m"),
            fired(
                "SmartrouteOpenOrdersUnchecked",
                "30m",
                expect("smartroute on a cannot list the open orders of kraken",
                       "Three or more checks of the venue's open orders against the ledger failed in 30 "
                       "minutes (log event open_orders_unavailable): orders placed behind its back would "
                       "go unseen.",
                       instance="a", venue="kraken", severity="warning"),
            ),
        ],
    },
    {  # a: a residual worked for 3 minutes, then abandoned at 4 min (a halt); b: flat within a minute
        "interval": "1m",
        "input_series": [
            series("smartroute_residual_open", "0 1 1 1 1 0x10", instance="a"),
            series("smartroute_residual_halts_total", "0 0 0 0 0 1x10", instance="a"),
            series("smartroute_residual_open", "0 1 0x12", instance="b"),
            series("smartroute_residual_halts_total", "0x14", instance="b"),
        ],
        "alert_rule_test": [
            silent("SmartrouteResidualOpen", "2m"),  # open for 1 minute only
            fired(
                "SmartrouteResidualOpen",
                "3m",
                expect("smartroute on a holds an unhedged arbitrage residual",
                       "An arbitrage's legs filled unequally and the difference is still being worked "
                       "after 2 minutes (log events residual_attempt); trading halts if it is not flat "
                       "within residual_timeout_ms.",
                       instance="a", severity="warning"),
            ),
            silent("SmartrouteResidualHalt", "4m"),
            fired(
                "SmartrouteResidualHalt",
                "6m",
                expect("smartroute on a halted trading: an arbitrage residual could not be flattened",
                       "An unhedged quantity was not flat within residual_timeout_ms. The halt reason "
                       "(/status, log event residual_abandoned) names the request, the venue and the "
                       "quantity: flatten it by hand, then resume.",
                       instance="a", severity="critical"),
            ),
            silent("SmartrouteResidualOpen", "7m"),
        ],
    },
    {  # a: a request unsettled for 7 minutes (a dark venue); b: settled after 3 minutes
        "interval": "1m",
        "input_series": [
            series("smartroute_requests_unsettled", "0 1 1 1 1 1 1 1 0x5", instance="a"),
            series("smartroute_requests_unsettled", "0 1 1 1 0x9", instance="b"),
        ],
        "alert_rule_test": [
            silent("SmartrouteRequestsUnsettled", "4m"),
            fired(
                "SmartrouteRequestsUnsettled",
                "6m",
                expect("smartroute on a holds 1 request(s) it cannot settle",
                       "An order's outcome is still unknown 5 minutes on (a venue stays dark, or its "
                       "result cannot be published): the request is in flight in the ledger, unanswered, "
                       "and retried in the background. /status (unsettled_requests) names each with its "
                       "last error; log events order_unsettled, order_settle_failed.",
                       instance="a", severity="critical"),
            ),
            silent("SmartrouteRequestsUnsettled", "9m"),
        ],
    },
    {  # a: the shared ledger refuses its renewals from 3 to 6 minutes; b renews throughout
        "interval": "1m",
        "input_series": [
            series("smartroute_ledger_lease_renewal_failures_total", "0 0 0 3 6 9 12 12x6", instance="a"),
            series("smartroute_ledger_lease_renewal_failures_total", "0x12", instance="b"),
        ],
        "alert_rule_test": [
            silent("SmartrouteLedgerLeasesNotRenewed", "3m"),
            fired(
                "SmartrouteLedgerLeasesNotRenewed",
                "5m",
                expect("smartroute on a cannot renew its leases on the shared ledger",
                       "The PostgreSQL ledger ([router] ledger_url) has refused or not answered the lease "
                       "renewals for minutes: once lease_ms passes, other routers take this one's requests "
                       "over and it stops acting on them; no order executes without the ledger. Log event "
                       "ledger_leases_not_renewed names the error.",
                       instance="a", severity="critical"),
            ),
            silent("SmartrouteLedgerLeasesNotRenewed", "10m"),
        ],
    },
]  # fmt: skip


def test_the_alerts_fire_on_the_scenarios_they_are_for(tmp_path: Path) -> None:
    tests = {
        "rule_files": [str(DEPLOY / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": ALERT_CASES,
    }
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(json.dumps(tests, indent=1))  # JSON is YAML
    result = run(tool("promtool", "prometheus"), "test", "rules", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr


# ── the Grafana dashboard ──────────────────────────────────────────────────────


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return data


def dashboard_queries() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"] == "smartroute" and board["title"]
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "instance"} <= variables


def referenced_metrics() -> set[str]:
    text = (DEPLOY / "alerts.yml").read_text() + "\n".join(dashboard_queries())
    return set(re.findall(r"\b(?:smartroute|process)_[a-z_]+\b", text))


# ── a real Prometheus scraping a running daemon ───────────────────────────────


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def running_daemon(tmp_path: Path, broker: str, prefix: str) -> AsyncIterator[int]:
    """Run the daemon in this process against the simulator, topics named `prefix`...; yield its HTTP port."""
    async with ExchangeSimulator(("binance", "bybit"), ("BTC-USDT", "ETH-USDT"), seed=11) as sim:
        port = free_port()
        config = tmp_path / "smartroute.toml"
        config.write_text(
            f"""
[daemon]
http_port = {port}
http_host = "127.0.0.1"
state_dir = "{tmp_path / "state"}"
shutdown_timeout_ms = 3000
[kafka]
bootstrap_servers = "{broker}"
topic_prefix = "{prefix}"
[venues.binance]
ws_url = "{sim.ws_url("binance")}"
[venues.bybit]
ws_url = "{sim.ws_url("bybit")}"
"""
        )
        await create_daemon_topics(config)
        daemon = Daemon(load_config(config, environ={}))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop), name="daemon-under-test")
        try:
            async with asyncio.timeout(20):
                await daemon.started.wait()
            yield port
        finally:
            stop.set()
            async with asyncio.timeout(15):
                await task


@asynccontextmanager
async def prometheus_server(tmp_path: Path, target_port: int) -> AsyncIterator[str]:
    """Run Prometheus on loopback with the shipped config and rules, aimed at `target_port`."""
    config = (DEPLOY / "prometheus.yml").read_text()
    for old, new in (
        ('"127.0.0.1:9464"', f'"127.0.0.1:{target_port}"'),
        ("scrape_interval: 5s", "scrape_interval: 1s"),
        ("scrape_timeout: 4s", "scrape_timeout: 1s"),
        ("evaluation_interval: 15s", "evaluation_interval: 1s"),
    ):
        assert config.count(old) == 1, f"deploy/prometheus.yml no longer has {old!r}"
        config = config.replace(old, new)
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(DEPLOY / "alerts.yml", tmp_path / "alerts.yml")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        tool("prometheus", "prometheus"),
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await until(lambda s: s.get(f"{url}/-/ready"), lambda status, _: status == 200, timeout_s=30)
        yield url
    finally:
        proc.terminate()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
        log.close()


async def until(
    request: Callable[[aiohttp.ClientSession], Any],
    predicate: Callable[[int, Any], bool],
    timeout_s: float = 20.0,
) -> Any:
    """Repeat `request` until `predicate(status, json_or_text)` holds; return that body."""
    last: tuple[int, Any] | None = None
    async with aiohttp.ClientSession() as session:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    try:
                        async with request(session) as response:
                            body = await response.text()
                            try:
                                last = (response.status, json.loads(body))
                            except ValueError:
                                last = (response.status, body)
                        if predicate(*last):
                            return last[1]
                    except aiohttp.ClientConnectionError as exc:
                        last = (0, repr(exc))
                    await asyncio.sleep(0.2)  # polling another process: there is no clock to inject
        except TimeoutError:
            raise AssertionError(f"condition not met within {timeout_s} s; last answer: {last}") from None


def query(url: str, expr: str) -> Callable[[aiohttp.ClientSession], Any]:
    return lambda s: s.get(f"{url}/api/v1/query", params={"query": expr})


def has_venues(*venues: str) -> Callable[[int, Any], bool]:
    def check(status: int, body: Any) -> bool:
        if status != 200:
            return False
        seen = {r["metric"].get("venue") for r in body["data"]["result"] if float(r["value"][1]) > 0}
        return set(venues) <= seen

    return check


def target_up(status: int, body: Any) -> bool:
    return status == 200 and [r["value"][1] for r in body["data"]["result"]] == ["1"]


def rules_evaluated(status: int, body: Any) -> bool:
    rules = [r for g in body["data"]["groups"] for r in g["rules"]] if status == 200 else []
    return bool(rules) and all(r["health"] != "unknown" for r in rules)


async def test_prometheus_scrapes_the_daemon_and_evaluates_the_shipped_alerts_and_dashboard(
    embedded_broker: str, tmp_path: Path
) -> None:
    tool("prometheus", "prometheus")  # before starting anything: a missing tool skips (fails in CI) at once
    prefix = f"t{uuid.uuid4().hex[:12]}."
    async with running_daemon(tmp_path, embedded_broker, prefix) as daemon_port:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{daemon_port}/metrics") as response,
        ):
            exposition = await response.text()
        served = {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line[:1].isalpha()}
        missing = referenced_metrics() - served
        assert not missing, f"alerts or dashboard use metrics the daemon does not serve: {sorted(missing)}"

        async with prometheus_server(tmp_path, daemon_port) as prom:
            await until(query(prom, 'up{job="smartroute"}'), target_up)
            await until(
                query(prom, 'smartroute_ws_messages_total{job="smartroute"}'), has_venues("binance", "bybit")
            )
            # Every series exists from start: an error counter is there at zero.
            errors = await until(
                query(prom, "smartroute_kafka_produce_errors_total"),
                lambda s, b: s == 200 and b["data"]["result"],
            )
            # This daemon's topics: the counters are per process, and other tests' topics share the registry.
            ours = [r for r in errors["data"]["result"] if r["metric"]["topic"].startswith(prefix)]
            assert ours and {r["value"][1] for r in ours} == {"0"}

            rules = await until(lambda s: s.get(f"{prom}/api/v1/rules"), rules_evaluated)
            loaded = {r["name"]: r for g in rules["data"]["groups"] for r in g["rules"]}
            assert set(loaded) == ALERTS
            assert {name: r["health"] for name, r in loaded.items() if r["health"] != "ok"} == {}
            assert {name for name, r in loaded.items() if r["state"] == "firing"} == set()

            async with aiohttp.ClientSession() as session:
                for expr in dashboard_queries():
                    concrete = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
                    async with session.get(f"{prom}/api/v1/query", params={"query": concrete}) as response:
                        answer = await response.json()
                    assert answer["status"] == "success", (expr, answer)
