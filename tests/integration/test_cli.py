"""The `smartroute` command as a user runs it: demo, check-config, refusals with exit codes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTROUTE_")}
    env.update(extra)
    return env


async def smartroute(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.cli",
        *args,
        cwd=REPO,
        env=env if env is not None else cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_demo_prints_opportunities_read_back_from_kafka_within_20_s_and_stops_on_ctrl_c() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.cli",
        "demo",
        "--seed",
        "7",
        cwd=REPO,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    started = time.monotonic()
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not any(line.lstrip().startswith("opened") for line in lines):
                raw = await proc.stdout.readline()
                assert raw, f"demo exited early: {lines}"
                lines.append(raw.decode().rstrip())
        first_opportunity_s = time.monotonic() - started
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            rest, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = "\n".join(lines) + "\n" + rest.decode()
    assert first_opportunity_s < 20
    assert proc.returncode == 0, output
    opened = next(line for line in lines if line.lstrip().startswith("opened"))
    assert " buy " in opened and " sell " in opened and "after fees" in opened
    assert "opportunity events read back from Kafka:" in output
    assert "opened" in output.rsplit("opportunity events read back from Kafka:", 1)[1]


async def test_demo_sends_orders_and_shows_their_results() -> None:
    code, out, err = await smartroute("demo", "--seed", "11", "--duration", "12")
    assert code == 0, err
    for venue in ("binance", "bybit", "okx", "coinbase", "kraken"):
        assert f"exchange simulator: {venue}" in out  # make run shows all five venues
    lines = out.splitlines()
    results = [line for line in lines if line.lstrip().startswith("result")]
    assert any("demo-order-1" in line and "filled" in line for line in results), out
    assert "order results read back from Kafka:" in out
    # Arbitrage requests go out once the router answered the market order, as a prompt desk's would.
    serving = lines.index(
        "  the router is serving: arbitrage requests go out on the next opportunities opened"
    )
    sent = [i for i, line in enumerate(lines) if "demo-arb-" in line and " sent: arbitrage " in line]
    assert sent and min(sent) > serving, out
    arbitrages = [line.split() for line in results if "demo-arb-" in line]
    assert len(arbitrages) == len(sent), out
    # Each answer comes with its reaction time (opportunity published → executed), and at least one
    # executes: the simulator's dislocations last 1–3 s, and a reaction of tens of ms (a few hundred
    # with the CPUs saturated) catches most; one may still close first (opportunity_closed).
    assert sum(1 for line in lines if line.lstrip().startswith("reaction ")) == len(sent), out
    assert any(fields[3] in ("filled", "partially_filled") for fields in arbitrages), out
    summary = next(line for line in lines if line.startswith("arbitrage requests answered:"))
    assert "reaction time, opportunity published → order executed: median" in summary, out


async def test_check_config_prints_the_effective_config_with_secrets_redacted(tmp_path: Path) -> None:
    config = tmp_path / "smartroute.toml"
    config.write_text(
        '[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\nsasl_username = "desk"\n'
        '[venues.binance]\nsymbols = ["BTC-USDT"]\n'
    )
    env = cli_env(SMARTROUTE_KAFKA__SASL_PASSWORD="canary-Secret-123", SMARTROUTE_CACHE__TTL_MS="5000")
    code, out, err = await smartroute("check-config", "--config", str(config), env=env)
    assert code == 0, err
    assert "canary-Secret-123" not in out + err
    view = orjson.loads(out)
    assert view["kafka"]["sasl_password"] == "<redacted>"
    assert view["cache"]["ttl_ms"] == 5000
    assert view["venues"]["binance"]["enabled"] is True
    assert view["venues"]["binance"]["ws_url"] == "wss://stream.binance.com:9443"


@pytest.mark.parametrize(
    ("toml", "env", "named"),
    [
        ("[cache]\nttl_ms = -5\n", {}, "cache.ttl_ms"),
        ("[venues.binance]\nwsurl = 'ws://x'\n", {}, "venues.binance.wsurl"),
        ("", {"SMARTROUTE_DETECTOR__MIN_NET_PROFIT_BPS": "lots"}, "detector.min_net_profit_bps"),
    ],
)
async def test_a_bad_config_refuses_to_start_naming_the_key(
    tmp_path: Path, toml: str, env: dict[str, str], named: str
) -> None:
    config = tmp_path / "smartroute.toml"
    config.write_text(toml)
    for command in ("check-config", "run"):
        code, out, err = await smartroute(command, "--config", str(config), env=cli_env(**env))
        assert code == 78, (out, err)  # EX_CONFIG: systemd does not restart-loop on it
        assert named in err


async def test_live_mode_needs_the_live_flag_and_the_flag_needs_live_mode(tmp_path: Path) -> None:
    live = tmp_path / "live.toml"
    live.write_text('[daemon]\nmode = "live"\n[venues.binance]\n')
    code, _, err = await smartroute("run", "--config", str(live))
    assert code == 78 and "--live" in err
    paper = tmp_path / "paper.toml"
    paper.write_text("[venues.binance]\n")
    code, _, err = await smartroute("run", "--live", "--config", str(paper))
    assert code == 78 and "paper" in err


async def test_run_without_any_enabled_venue_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "empty.toml"
    config.write_text("")
    code, _, err = await smartroute("run", "--config", str(config))
    assert code == 78 and "venue" in err


async def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    code, _, err = await smartroute("check-config", "--config", str(missing))
    assert code == 78 and str(missing) in err


async def test_the_shipped_example_config_is_valid() -> None:
    code, out, err = await smartroute(
        "check-config", "--config", str(REPO / "deploy" / "smartroute.example.toml")
    )
    assert code == 0, err
    view = orjson.loads(out)
    assert sorted(v for v, c in view["venues"].items() if c["enabled"]) == ["binance", "bybit"]
