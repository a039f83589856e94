"""Config loading: defaults, the documented example, every validation rule, env overrides, secrets."""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.types import VENUE_IDS
from daemon.config import Config, build_config, load_config, load_secret, redacted_view
from daemon.config.topics import DEFAULT_RETENTION_MS
from daemon.errors import ConfigError

DESIGN_EXAMPLE = """
[daemon]
mode = "paper"                 # or "live" (also needs --live)
http_port = 9464
state_dir = "/var/lib/smartroute"

[kafka]
bootstrap_servers = "127.0.0.1:9092"
topic_prefix = "smartroute."

[cache]
ttl_ms = 30000
max_quote_age_ms = 1500

[detector]
min_net_profit_bps = 5
max_notional = 10000

[venues.binance]
enabled = true
symbols = ["BTC-USDT", "ETH-USDT"]
ws_url = "wss://stream.binance.com:9443"
rest_url = "https://api.binance.com"
taker_fee_bps = 10

[users.alice]
preferred_venues = ["binance"]
preferred_bias_bps = 5
risk_tolerance = "low"
strategy = "preferred"
"""

SASL = '[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-512"\nsasl_username = "svc"\n'
CANARY = "canary-Pa55w0rd-7f3a9c"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "smartroute.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), environ=env or {})


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    return str(caught.value)


# --- defaults and the documented example ---------------------------------------------------------


def test_no_file_and_no_environment_gives_the_documented_defaults() -> None:
    cfg = load_config(None, environ={})
    assert cfg == Config()
    assert cfg.daemon.mode == "paper"
    assert (cfg.daemon.http_port, cfg.daemon.http_host) == (9464, "127.0.0.1")
    assert cfg.daemon.state_dir == Path("/var/lib/smartroute")
    assert (cfg.daemon.log_level, cfg.daemon.shutdown_timeout_ms) == ("info", 10_000)
    assert cfg.kafka.bootstrap_servers == ("127.0.0.1:9092",)
    assert (cfg.kafka.client_id, cfg.kafka.security_protocol) == ("smartroute", "PLAINTEXT")
    assert (cfg.kafka.send_buffer, cfg.kafka.linger_ms, cfg.kafka.request_timeout_ms) == (10_000, 5, 30_000)
    assert cfg.kafka.sasl_password is None
    assert (cfg.cache.ttl_ms, cfg.cache.max_quote_age_ms) == (30_000, 1_500)
    assert cfg.detector.enabled
    assert cfg.detector.min_net_profit_bps == Decimal(5)
    assert cfg.detector.max_notional == Decimal(10_000)
    assert cfg.detector.update_min_change_bps == Decimal(1)
    assert cfg.detector.sweep_interval_ms == 100
    assert (cfg.router.max_request_age_ms, cfg.router.reconcile_interval_ms) == (30_000, 300_000)
    assert cfg.users == {}
    assert cfg.topic("opportunities") == "smartroute.opportunities"


def test_every_venue_is_present_disabled_with_production_endpoints_and_tier0_fees_by_default() -> None:
    cfg = load_config(None, environ={})
    assert tuple(cfg.venues) == VENUE_IDS
    assert cfg.enabled_venues() == {}
    expected = {
        "binance": ("wss://stream.binance.com:9443", "https://api.binance.com", 10, 10),
        "bybit": ("wss://stream.bybit.com/v5/public/spot", "https://api.bybit.com", 10, 10),
        "okx": ("wss://ws.okx.com:8443/ws/v5/public", "https://www.okx.com", 10, 8),
        "coinbase": ("wss://advanced-trade-ws.coinbase.com", "https://api.coinbase.com", 120, 60),
        "kraken": ("wss://ws.kraken.com/v2", "https://api.kraken.com", 40, 25),
    }
    for venue, (ws, rest, taker, maker) in expected.items():
        v = cfg.venues[venue]
        assert (v.venue, v.enabled, v.ws_url, v.rest_url) == (venue, False, ws, rest)
        assert (v.taker_fee_bps, v.maker_fee_bps) == (Decimal(taker), Decimal(maker))
        assert v.symbols == ("BTC-USDT", "ETH-USDT")
        assert v.silence_timeout_ms == 10_000


def test_the_design_example_file_loads() -> None:
    cfg = build_config(__import__("tomllib").loads(DESIGN_EXAMPLE), {})
    assert cfg.daemon.mode == "paper"
    assert tuple(cfg.enabled_venues()) == ("binance",)
    assert cfg.venues["binance"].taker_fee_bps == Decimal(10)
    alice = cfg.users["alice"]
    assert alice.preferred_venues == ("binance",)
    assert alice.preferred_bias_bps == Decimal(5)
    assert (alice.risk_tolerance, alice.strategy) == ("low", "preferred")
    assert (alice.max_slippage_bps, alice.max_order_notional, alice.excluded_venues) == (None, None, ())


def test_a_venue_section_without_enabled_turns_the_venue_on(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[venues.okx]\n[venues.kraken]\nenabled = false\n")
    assert tuple(cfg.enabled_venues()) == ("okx",)
    assert cfg.venues["okx"].ws_url == "wss://ws.okx.com:8443/ws/v5/public"


def test_kraken_tier_defaults_to_starter_and_reads_each_documented_tier(tmp_path: Path) -> None:
    assert load_config(None, environ={}).venues["kraken"].tier == "starter"
    assert load(tmp_path, "[venues.kraken]\n").venues["kraken"].tier == "starter"
    for tier in ("starter", "intermediate", "pro"):
        assert load(tmp_path, f'[venues.kraken]\ntier = "{tier}"\n').venues["kraken"].tier == tier
    env = {"SMARTROUTE_VENUES__KRAKEN__TIER": "pro"}
    assert load(tmp_path, "[venues.kraken]\n", env).venues["kraken"].tier == "pro"
    assert load(tmp_path, "[venues.okx]\n").venues["okx"].tier is None


def test_kraken_tier_refuses_an_unknown_tier_and_any_other_venue(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[venues.kraken]\ntier = "gold"\n')
    assert "venues.kraken.tier" in message
    assert all(tier in message for tier in ("starter", "intermediate", "pro"))
    for venue in ("binance", "bybit", "okx", "coinbase"):
        message = error_of(tmp_path, f'[venues.{venue}]\ntier = "pro"\n')
        assert f"venues.{venue}.tier" in message
        assert "only kraken" in message


def test_decimal_settings_accept_numbers_and_strings_exactly(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [venues.binance]
        taker_fee_bps = 7.5
        maker_fee_bps = "0.1"
        [detector]
        max_notional = 250
        min_net_profit_bps = "1e1"
        """,
    )
    binance = cfg.venues["binance"]
    assert binance.taker_fee_bps == Decimal("7.5") and isinstance(binance.taker_fee_bps, Decimal)
    assert binance.maker_fee_bps == Decimal("0.1")
    assert cfg.detector.max_notional == Decimal(250)
    assert cfg.detector.min_net_profit_bps == Decimal(10)


def test_bootstrap_servers_accept_a_list_or_a_comma_separated_string(tmp_path: Path) -> None:
    listed = load(tmp_path, '[kafka]\nbootstrap_servers = ["a:9092", "b:9093"]\n')
    joined = load(tmp_path, '[kafka]\nbootstrap_servers = "a:9092, b:9093"\n')
    assert listed.kafka.bootstrap_servers == joined.kafka.bootstrap_servers == ("a:9092", "b:9093")


def test_topic_uses_the_configured_prefix(tmp_path: Path) -> None:
    assert load(tmp_path, '[kafka]\ntopic_prefix = "desk-1."\n').topic("results") == "desk-1.results"
    assert load(tmp_path, '[kafka]\ntopic_prefix = ""\n').topic("results") == "results"


# --- files ---------------------------------------------------------------------------------------


def test_a_missing_file_is_an_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match=r"config file not found: .*nowhere\.toml"):
        load_config(missing, environ={})


def test_invalid_toml_is_an_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"smartroute.toml: invalid TOML"):
        load(tmp_path, "[cache\nttl_ms = 1\n")


# --- every validation rule names its key -----------------------------------------------------------

INVALID = [
    ("[cache]\nttl_ms = -5", "cache.ttl_ms: must be a positive integer, got -5"),
    ("[cache]\nttl_ms = true", "cache.ttl_ms: must be a positive integer, got true"),
    ("[cache]\nttl_ms = 1.5", "cache.ttl_ms: must be a positive integer, got 1.5"),
    ("[cache]\nmax_quote_age_ms = 0", "cache.max_quote_age_ms: must be a positive integer, got 0"),
    (
        "[cache]\nmax_quote_age_ms = 40000",
        "cache.max_quote_age_ms: must be ≤ cache.ttl_ms (30000), got 40000",
    ),
    ("[cache]\nttl = 5", "cache.ttl: unknown key"),
    ('[daemon]\nmode = "sim"', 'daemon.mode: must be one of "paper", "live", got "sim"'),
    ("[daemon]\nhttp_port = 70000", "daemon.http_port: must be an integer from 0 to 65535, got 70000"),
    ("[daemon]\nhttp_port = -1", "daemon.http_port: must be an integer from 0 to 65535, got -1"),
    ('[daemon]\nhttp_host = ""', 'daemon.http_host: must be a non-empty string, got ""'),
    ("[daemon]\nstate_dir = 5", "daemon.state_dir: must be a non-empty string, got 5"),
    ('[daemon]\nlog_level = "trace"', 'daemon.log_level: must be one of "debug", "info", "warning", "error"'),
    ("[daemon]\nshutdown_timeout_ms = 0", "daemon.shutdown_timeout_ms: must be a positive integer, got 0"),
    ("[daemon]\ncolour = 1", "daemon.colour: unknown key"),
    ("daemon = 1", "daemon: must be a table, got 1"),
    ("[risks]\nmax = 1", "risks: unknown section"),
    ("[risk]\nmax = 1", "risk.max: unknown key"),
    ("[risk]\nmax_order_notional = 0", "risk.max_order_notional"),
    ("[risk]\nmax_orders_per_second = 0", "risk.max_orders_per_second"),
    (
        "[risk]\nmax_venue_exposure = 5000000",
        "risk.max_venue_exposure: no longer exists: positions are netted per asset across venues; limit "
        "them with risk.max_gross_exposure (in valuation_currency) and [risk.max_position] (per asset)",
    ),
    ("[risk]\nmax_gross_exposure = 0", "risk.max_gross_exposure: must be a finite decimal number > 0"),
    ('[risk]\nmax_daily_loss = "-5"', "risk.max_daily_loss: must be a finite decimal number > 0"),
    ('[risk]\nvaluation_currency = "usdt"', 'risk.valuation_currency: must be an asset like "USDT"'),
    ("[risk.max_position]\nBTC = 0", "risk.max_position.BTC: must be a finite decimal number > 0"),
    ('[risk.max_position]\n"BT-C" = "1"', "risk.max_position.BT-C: must name an asset like BTC"),
    ('[risk.max_position]\nBTC = "1"\nbtc = "2"', "risk.max_position.btc: repeats the limit of BTC"),
    ("[risk]\nmax_position = 3", "risk.max_position: must be a table, got 3"),
    ('[router]\nresidual_policy = "hope"', "router.residual_policy"),
    ("[router]\nresidual_max_slippage_bps = -1", "router.residual_max_slippage_bps"),
    ("[router]\nresidual_max_slippage_bps = 5000", "router.residual_max_slippage_bps: must be ≤ 1000"),
    ("[router]\nresidual_step_bps = 0", "router.residual_step_bps"),
    ("[router]\nresidual_timeout_ms = 0", "router.residual_timeout_ms"),
    ('[router]\nresidual_timeout_ms = "30s"', "router.residual_timeout_ms"),
    ('[router]\ngroup_id = ""', "router.group_id"),
    ("[router]\nmax_request_age_ms = 0", "router.max_request_age_ms: must be a positive integer, got 0"),
    ("[router]\nmax_request_age_ms = -30000", "router.max_request_age_ms: must be a positive integer"),
    ("[router]\nreconcile_interval_ms = 0", "router.reconcile_interval_ms: must be an integer from 1000"),
    ("[kafka]\nbootstrap_servers = 9092", "kafka.bootstrap_servers: must be a string or a list of strings"),
    ('[kafka]\nbootstrap_servers = "localhost"', 'kafka.bootstrap_servers: each server must be "host:port"'),
    (
        '[kafka]\nbootstrap_servers = ["a:0"]',
        'kafka.bootstrap_servers: each server must be "host:port", got "a:0"',
    ),
    ("[kafka]\nbootstrap_servers = []", "kafka.bootstrap_servers: must name at least one server"),
    ('[kafka]\nclient_id = ""', "kafka.client_id: must be a non-empty string"),
    ('[kafka]\ntopic_prefix = "smart route."', "kafka.topic_prefix: must be at most 200 characters of A-Z"),
    ('[kafka]\nsecurity_protocol = "TLS"', 'kafka.security_protocol: must be one of "PLAINTEXT", "SSL"'),
    ('[kafka]\nsasl_mechanism = "PLAIN"', "kafka.sasl_mechanism: only used with security_protocol SASL_"),
    ('[kafka]\nsasl_username = "u"', "kafka.sasl_username: only used with security_protocol SASL_"),
    ('[kafka]\nssl_cafile = "/ca.pem"', "kafka.ssl_cafile: only used with security_protocol SSL or SASL_SSL"),
    (
        '[kafka]\nsecurity_protocol = "SSL"\nssl_cafile = "/nonexistent/ca.pem"',
        "kafka.ssl_cafile: file not found",
    ),
    (
        '[kafka]\nsecurity_protocol = "SSL"\nssl_check_hostname = "no"',
        "kafka.ssl_check_hostname: must be true or",
    ),
    (
        '[kafka]\nsecurity_protocol = "SASL_SSL"',
        "kafka.sasl_mechanism: required with security_protocol SASL_SSL",
    ),
    (
        '[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"',
        "kafka.sasl_username: required with security_protocol SASL_PLAINTEXT",
    ),
    (
        '[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "GSSAPI"\nsasl_username = "u"',
        'kafka.sasl_mechanism: must be one of "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", got "GSSAPI"',
    ),
    (
        SASL,
        "kafka.sasl_password: required with security_protocol SASL_SSL; set SMARTROUTE_KAFKA__SASL_PASSWORD",
    ),
    ("[kafka]\nsend_buffer = 0", "kafka.send_buffer: must be a positive integer, got 0"),
    ("[kafka]\nlinger_ms = -1", "kafka.linger_ms: must be an integer ≥ 0, got -1"),
    ("[kafka]\nrequest_timeout_ms = 0", "kafka.request_timeout_ms: must be a positive integer, got 0"),
    (
        "[detector]\nmin_net_profit_bps = -1",
        "detector.min_net_profit_bps: must be a finite decimal number ≥ 0",
    ),
    ("[detector]\nmax_notional = 0", "detector.max_notional: must be a finite decimal number > 0"),
    (
        '[detector]\nmax_notional = "abc"',
        "detector.max_notional: must be a finite decimal number > 0 (TOML number or",
    ),
    (
        '[detector]\nmax_notional = "NaN"',
        "detector.max_notional: must be a finite decimal number > 0 (TOML number or",
    ),
    ("[detector]\nmax_notional = inf", "detector.max_notional: must be a finite decimal number > 0"),
    ("[detector]\nmax_notional = true", "detector.max_notional: must be a finite decimal number > 0"),
    ("[detector]\nupdate_min_change_bps = -0.5", "detector.update_min_change_bps: must be a finite decimal"),
    ("[detector]\nsweep_interval_ms = 0", "detector.sweep_interval_ms: must be a positive integer, got 0"),
    ('[detector]\nenabled = "yes"', 'detector.enabled: must be true or false, got "yes"'),
    ("venues = 5", "venues: must be a table, got 5"),
    ("[venues]\nbinance = 5", "venues.binance: must be a table, got 5"),
    (
        "[venues.bitstamp]",
        "venues.bitstamp: unknown venue; known venues: binance, bybit, okx, coinbase, kraken",
    ),
    ('[venues.binance]\nwsurl = "ws://x"', "venues.binance.wsurl: unknown key"),
    ("[venues.binance]\nenabled = 1", "venues.binance.enabled: must be true or false, got 1"),
    ("[venues.binance]\nsymbols = []", "venues.binance.symbols: must name at least one symbol"),
    (
        '[venues.binance]\nsymbols = "BTC-USDT"',
        'venues.binance.symbols: must be a list of strings, got "BTC-USDT"',
    ),
    (
        '[venues.binance]\nsymbols = ["btc-usdt"]',
        "venues.binance.symbols: must be canonical BASE-QUOTE upper case",
    ),
    (
        '[venues.binance]\nsymbols = ["BTCUSDT"]',
        "venues.binance.symbols: must be canonical BASE-QUOTE upper case",
    ),
    (
        '[venues.binance]\nsymbols = ["BTC-USDT", "ETH-USDT", "BTC-USDT"]',
        'venues.binance.symbols: must not repeat an entry, got ["BTC-USDT"] more than once',
    ),
    (
        '[venues.bybit]\nws_url = "https://x"',
        "venues.bybit.ws_url: must be a ws:// or wss:// URL with a host",
    ),
    (
        '[venues.bybit]\nws_url = "ws://"',
        'venues.bybit.ws_url: must be a ws:// or wss:// URL with a host, got "ws://"',
    ),
    ('[venues.bybit]\nws_url = "ws://h:99999"', "venues.bybit.ws_url: must be a ws:// or wss:// URL"),
    (
        '[venues.okx]\nrest_url = "ws://x"',
        "venues.okx.rest_url: must be a http:// or https:// URL with a host",
    ),
    ("[venues.okx]\ntaker_fee_bps = -1", "venues.okx.taker_fee_bps: must be a finite decimal number ≥ 0"),
    ('[venues.okx]\nmaker_fee_bps = "x"', "venues.okx.maker_fee_bps: must be a finite decimal number ≥ 0"),
    (
        "[venues.okx]\nsilence_timeout_ms = 0",
        "venues.okx.silence_timeout_ms: must be a positive integer, got 0",
    ),
    ("users = 1", "users: must be a table, got 1"),
    ('[users."bad id!"]', "users.bad id!: a user id is 1 to 64 characters of A-Z a-z 0-9 . _ : -"),
    (f"[users.{'u' * 65}]", f"users.{'u' * 65}: a user id is 1 to 64 characters"),
    (
        '[users.alice]\npreferred_venues = ["ftx"]',
        'users.alice.preferred_venues: unknown venue "ftx"; known venues',
    ),
    (
        '[users.alice]\nexcluded_venues = "okx"',
        'users.alice.excluded_venues: must be a list of strings, got "okx"',
    ),
    (
        '[users.alice]\npreferred_venues = ["okx", "kraken"]\nexcluded_venues = ["kraken"]',
        'users.alice.excluded_venues: must not name a preferred venue, got ["kraken"]',
    ),
    (
        "[users.alice]\npreferred_bias_bps = -1",
        "users.alice.preferred_bias_bps: must be a finite decimal number ≥ 0",
    ),
    (
        '[users.alice]\nrisk_tolerance = "yolo"',
        'users.alice.risk_tolerance: must be one of "low", "medium", "high"',
    ),
    (
        "[users.alice]\nmax_slippage_bps = 0",
        "users.alice.max_slippage_bps: must be a finite decimal number > 0",
    ),
    (
        "[users.alice]\nmax_order_notional = -1",
        "users.alice.max_order_notional: must be a finite decimal number > 0",
    ),
    (
        '[users.alice]\nstrategy = "twap"',
        'users.alice.strategy: must be one of "best_price", "preferred", "fastest"',
    ),
    ("[users.alice]\nbudget = 1", "users.alice.budget: unknown key"),
]


@pytest.mark.parametrize(
    ("toml", "message"), INVALID, ids=[m.split(":")[0] + f"#{i}" for i, (_, m) in enumerate(INVALID)]
)
def test_an_invalid_setting_is_refused_with_an_error_naming_its_key(
    tmp_path: Path, toml: str, message: str
) -> None:
    assert error_of(tmp_path, toml).startswith(message)


def test_ssl_keyfile_without_certfile_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("key")
    text = f'[kafka]\nsecurity_protocol = "SSL"\nssl_keyfile = "{key}"\n'
    assert error_of(tmp_path, text) == "kafka.ssl_keyfile: needs kafka.ssl_certfile as well"


def test_ssl_paths_that_exist_are_kept(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("x")
    cfg = load(
        tmp_path,
        f"""
        [kafka]
        security_protocol = "SSL"
        ssl_cafile = "{tmp_path / "ca.pem"}"
        ssl_certfile = "{tmp_path / "client.pem"}"
        ssl_keyfile = "{tmp_path / "client.key"}"
        ssl_check_hostname = false
        """,
    )
    assert cfg.kafka.ssl_cafile == tmp_path / "ca.pem"
    assert cfg.kafka.ssl_keyfile == tmp_path / "client.key"
    assert cfg.kafka.ssl_check_hostname is False


# --- environment overrides ---------------------------------------------------------------------------


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[cache]\nttl_ms = 20000\n", {"SMARTROUTE_CACHE__TTL_MS": "5000"})
    assert cfg.cache.ttl_ms == 5000


def test_environment_values_are_parsed_as_toml_when_they_are_toml(tmp_path: Path) -> None:
    env = {
        "SMARTROUTE_VENUES__BYBIT__SYMBOLS": '["BTC-USDT"]',
        "SMARTROUTE_VENUES__BYBIT__TAKER_FEE_BPS": "7.5",
        "SMARTROUTE_DETECTOR__ENABLED": "false",
        "SMARTROUTE_DAEMON__MODE": "live",  # not TOML: taken as the string
        "SMARTROUTE_KAFKA__CLIENT_ID": "123",  # TOML integer, but a string is expected: the text is used
        "SMARTROUTE_KAFKA__BOOTSTRAP_SERVERS": '["k1:9092", "k2:9092"]',
    }
    cfg = load_config(None, environ=env)
    assert cfg.venues["bybit"].symbols == ("BTC-USDT",)
    assert cfg.venues["bybit"].taker_fee_bps == Decimal("7.5")
    assert cfg.detector.enabled is False
    assert cfg.daemon.mode == "live"
    assert cfg.kafka.client_id == "123"
    assert cfg.kafka.bootstrap_servers == ("k1:9092", "k2:9092")


def test_nested_venue_override_replaces_one_key_and_keeps_the_rest(tmp_path: Path) -> None:
    env = {"SMARTROUTE_VENUES__BINANCE__WS_URL": "ws://127.0.0.1:9000"}
    cfg = load(tmp_path, '[venues.binance]\nsymbols = ["SOL-USDT"]\n', env)
    binance = cfg.venues["binance"]
    assert binance.ws_url == "ws://127.0.0.1:9000"
    assert binance.symbols == ("SOL-USDT",)
    assert binance.enabled
    assert binance.rest_url == "https://api.binance.com"


def test_a_venue_configured_only_through_the_environment_is_enabled() -> None:
    cfg = load_config(None, environ={"SMARTROUTE_VENUES__KRAKEN__SYMBOLS": '["BTC-USD"]'})
    assert tuple(cfg.enabled_venues()) == ("kraken",)


def test_user_override_matches_the_file_section_case_insensitively(tmp_path: Path) -> None:
    cfg = load(
        tmp_path, '[users.Alice]\nstrategy = "preferred"\n', {"SMARTROUTE_USERS__ALICE__STRATEGY": "split"}
    )
    assert set(cfg.users) == {"Alice"}
    assert cfg.users["Alice"].strategy == "split"


def test_a_bad_environment_value_names_the_variable_and_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"SMARTROUTE_CACHE__TTL_MS": "-5"})
    assert (
        str(caught.value)
        == "SMARTROUTE_CACHE__TTL_MS (environment) → cache.ttl_ms: must be a positive integer, got -5"
    )


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("SMARTROUTE_CACHE__TTL", "SMARTROUTE_CACHE__TTL (environment) → cache.ttl: unknown key"),
        ("SMARTROUTE_FOO__BAR", "SMARTROUTE_FOO__BAR (environment) → foo: unknown section"),
        (
            "SMARTROUTE_VENUES__BINANCE__WSURL",
            "SMARTROUTE_VENUES__BINANCE__WSURL (environment) → venues.binance.wsurl: unknown key",
        ),
        (
            "SMARTROUTE_VENUES__FTX__ENABLED",
            "SMARTROUTE_VENUES__FTX__ENABLED (environment) → venues.ftx: unknown venue",
        ),
        (
            "SMARTROUTE_CACHE__TTL_MS__X",
            "SMARTROUTE_CACHE__TTL_MS__X (environment) → cache.ttl_ms: is 30000, not a table",
        ),
        (
            "SMARTROUTE_CACHE",
            "SMARTROUTE_CACHE (environment): not a config override; expected SMARTROUTE_<SECTION>__<KEY>",
        ),
        ("SMARTROUTE_CACHE____TTL_MS", "SMARTROUTE_CACHE____TTL_MS (environment): not a config override"),
    ],
)
def test_an_environment_variable_that_maps_to_no_key_is_an_error_naming_it(
    tmp_path: Path, variable: str, message: str
) -> None:
    assert error_of(tmp_path, "[cache]\nttl_ms = 30000\n", {variable: "1"}).startswith(message)


def test_variables_without_the_prefix_are_ignored() -> None:
    assert (
        load_config(None, environ={"PATH": "/bin", "SMARTROUTEX": "1", "smartroute_cache__ttl_ms": "x"})
        == Config()
    )


def test_the_process_environment_is_used_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTROUTE_CACHE__MAX_QUOTE_AGE_MS", "700")
    assert load_config(None).cache.max_quote_age_ms == 700


# --- secrets -----------------------------------------------------------------------------------------


def test_a_password_in_the_file_is_refused_and_says_where_it_belongs(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, SASL + f'sasl_password = "{CANARY}"\n', {"SMARTROUTE_KAFKA__SASL_PASSWORD": "x"}
    )
    assert message.startswith("kafka.sasl_password: secrets never live in the config file")
    assert "SMARTROUTE_KAFKA__SASL_PASSWORD" in message
    assert CANARY not in message


def test_the_sasl_password_comes_from_the_environment(tmp_path: Path) -> None:
    cfg = load(tmp_path, SASL, {"SMARTROUTE_KAFKA__SASL_PASSWORD": CANARY})
    assert cfg.kafka.sasl_password is not None
    assert cfg.kafka.sasl_password.reveal() == CANARY
    assert (cfg.kafka.sasl_mechanism, cfg.kafka.sasl_username) == ("SCRAM-SHA-512", "svc")


def test_the_sasl_password_comes_from_the_systemd_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "kafka_sasl_password").write_text(CANARY + "\n")
    cfg = load(tmp_path, SASL, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert cfg.kafka.sasl_password is not None
    assert cfg.kafka.sasl_password.reveal() == CANARY


def test_the_environment_password_wins_over_the_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "kafka_sasl_password").write_text("from-file")
    env = {"CREDENTIALS_DIRECTORY": str(creds), "SMARTROUTE_KAFKA__SASL_PASSWORD": "from-env"}
    password = load(tmp_path, SASL, env).kafka.sasl_password
    assert password is not None and password.reveal() == "from-env"


def test_an_empty_secret_is_refused(tmp_path: Path) -> None:
    assert error_of(tmp_path, SASL, {"SMARTROUTE_KAFKA__SASL_PASSWORD": ""}).startswith(
        "SMARTROUTE_KAFKA__SASL_PASSWORD (environment): is set but empty"
    )
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "kafka_sasl_password").write_text("\n")
    assert "is empty" in error_of(tmp_path, SASL, {"CREDENTIALS_DIRECTORY": str(creds)})


def test_a_password_variable_without_sasl_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"SMARTROUTE_KAFKA__SASL_PASSWORD": CANARY})
    expected = "SMARTROUTE_KAFKA__SASL_PASSWORD (environment) → kafka.sasl_password: only used with"
    assert str(caught.value).startswith(expected)
    assert CANARY not in str(caught.value)


def test_load_secret_returns_none_when_neither_source_is_set(tmp_path: Path) -> None:
    assert load_secret("BINANCE_API_KEY", "BINANCE_API_KEY", {}) is None
    assert load_secret("BINANCE_API_KEY", "BINANCE_API_KEY", {"CREDENTIALS_DIRECTORY": str(tmp_path)}) is None


def test_secrets_never_appear_in_repr_str_or_the_redacted_view(tmp_path: Path) -> None:
    cfg = load(tmp_path, SASL, {"SMARTROUTE_KAFKA__SASL_PASSWORD": CANARY})
    password = cfg.kafka.sasl_password
    for text in (repr(cfg), str(cfg), repr(cfg.kafka), repr(password), str(password), f"{password}"):
        assert CANARY not in text
    assert "<redacted>" in repr(cfg.kafka)
    view = redacted_view(cfg)
    assert CANARY not in json.dumps(view)
    kafka = view["kafka"]
    assert isinstance(kafka, dict) and kafka["sasl_password"] == "<redacted>"


# --- shape of the result --------------------------------------------------------------------------


def test_the_config_tree_is_frozen() -> None:
    cfg = load_config(None, environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.cache.ttl_ms = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.daemon = cfg.daemon  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.venues["binance"] = cfg.venues["okx"]  # type: ignore[index]
    with pytest.raises(TypeError):
        cfg.users["mallory"] = None  # type: ignore[index]
    assert not hasattr(cfg.kafka, "__dict__")  # slotted


def test_the_redacted_view_is_json_data_and_loads_back_to_the_same_config() -> None:
    cfg = build_config(__import__("tomllib").loads(DESIGN_EXAMPLE), {})
    view = redacted_view(cfg)
    data = json.loads(json.dumps(view))
    assert data["detector"]["max_notional"] == "10000"
    assert data["venues"]["binance"]["symbols"] == ["BTC-USDT", "ETH-USDT"]
    assert data["kafka"]["sasl_password"] is None
    assert build_config(data, {}) == cfg


def _keys(value: object) -> object:
    """The shape `check-config` must print for a config value: every dataclass field, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _keys(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return _keys_of_mapping(value)


def _keys_of_mapping(value: object) -> object:
    return {k: None for k in value} if isinstance(value, Mapping) else None


def _printed_keys(value: object) -> object:
    return {k: _printed_keys(v) for k, v in value.items()} if isinstance(value, dict) else None


def test_check_config_prints_every_section_and_every_field_of_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon.cli import main

    path = tmp_path / "smartroute.toml"
    path.write_text(
        DESIGN_EXAMPLE
        + '\n[risk]\nmax_orders_per_second = 7\n[router]\ngroup_id = "desk-router"\n'
        + '[users.bob]\npreferred_venues = ["binance"]\n'
    )
    assert main(["check-config", "--config", str(path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    cfg = load_config(path, environ={})
    expected: dict[str, object] = {}
    for section in dataclasses.fields(cfg):
        value = getattr(cfg, section.name)
        if isinstance(value, Mapping):
            # A table of tables: each entry's fields, less the one repeating its key.
            expected[section.name] = {
                key: {k: v for k, v in _keys(entry).items() if k != dataclasses.fields(entry)[0].name}
                for key, entry in value.items()
            }
        else:
            expected[section.name] = _keys(value)
    assert _printed_keys(printed) == expected
    assert printed["risk"]["max_orders_per_second"] == 7
    assert printed["router"]["group_id"] == "desk-router"
    assert build_config(printed, {}) == cfg  # what is printed is the whole effective config


def test_the_topics_section_has_sensible_defaults_and_reads_every_key() -> None:
    assert build_config({}, {}).topics.retention_ms == DEFAULT_RETENTION_MS
    topics = build_config(
        {
            "topics": {
                "partitions": 12,
                "replication_factor": 3,
                "min_insync_replicas": 2,
                "retention_ms": {"quotes": 60_000, "control": -1},
            }
        },
        {"SMARTROUTE_TOPICS__RETENTION_MS__DLQ": "1000"},
    ).topics
    assert (topics.partitions, topics.replication_factor, topics.min_insync_replicas) == (12, 3, 2)
    assert topics.retention_ms == {**DEFAULT_RETENTION_MS, "quotes": 60_000, "control": -1, "dlq": 1000}


@pytest.mark.parametrize(
    ("topics", "message"),
    [
        ({"partitions": 0}, "topics.partitions: must be an integer from 1 to 10000, got 0"),
        ({"replication_factor": 2, "min_insync_replicas": 3}, "topics.min_insync_replicas: must be ≤"),
        ({"retention_ms": {"preferences": 1000}}, "topics.retention_ms.preferences: is compacted"),
        ({"retention_ms": {"trades": 1000}}, "topics.retention_ms.trades: is not a topic of the contract"),
        ({"retention_ms": {"quotes": 0}}, "topics.retention_ms.quotes: must be -1 (forever) or a positive"),
        ({"retention_ms": {"quotes": -2}}, "topics.retention_ms.quotes: must be an integer ≥ -1"),
        ({"partition": 3}, "topics.partition: unknown key"),
    ],
)
def test_a_bad_topics_setting_is_named(topics: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"topics": topics}, {})
    assert str(caught.value).startswith(message), str(caught.value)


EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "smartroute.example.toml"
NOT_IN_FILES = {("kafka", "sasl_password")}  # a secret: from the environment or a credential only


def test_the_shipped_example_config_documents_every_key_of_every_section() -> None:
    text = EXAMPLE.read_text()
    blocks = dict(re.findall(r"^\[([a-z_.]+)\][^\n]*\n(.*?)(?=^\[|\Z)", text, re.M | re.S))
    undocumented = []
    for section in dataclasses.fields(Config):
        value = getattr(Config(), section.name)
        if not dataclasses.is_dataclass(value):
            continue  # venues and users: tables of tables, shown by example entries
        for key in (f.name for f in dataclasses.fields(value)):
            set_or_commented = re.search(rf"^#?\s*{key}\s*=", blocks.get(section.name, ""), re.M)
            if not set_or_commented and f"{section.name}.{key}" not in blocks:
                undocumented.append(f"{section.name}.{key}")
    assert sorted(set(undocumented) - {".".join(k) for k in NOT_IN_FILES}) == []
    assert build_config(tomllib.loads(text), {}).topics.retention_ms == DEFAULT_RETENTION_MS


def test_risk_limits_read_per_asset_positions_and_the_loss_limit() -> None:
    cfg = build_config(
        tomllib.loads(
            '[risk]\nvaluation_currency = "USDC"\nmax_gross_exposure = "250000.5"\nmax_daily_loss = 1000\n'
            '[risk.max_position]\nBTC = "2.5"\nETH = 40\n'
        ),
        {"SMARTROUTE_RISK__MAX_POSITION__SOL": "300"},
    )
    risk = cfg.risk
    assert (risk.valuation_currency, risk.max_gross_exposure, risk.max_daily_loss) == (
        "USDC",
        Decimal("250000.5"),
        Decimal(1000),
    )
    assert dict(risk.max_position) == {"BTC": Decimal("2.5"), "ETH": Decimal(40), "SOL": Decimal(300)}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://smartroute:pw@db:5432/ledger", "must not contain a password"),
        ("mysql://db/ledger", "must be a postgresql:// URL"),
        ("postgresql://smartroute@db:5432", "must name the database"),
    ],
)
def test_a_bad_ledger_url_refuses_to_start_naming_the_key(tmp_path: Path, url: str, problem: str) -> None:
    message = error_of(tmp_path, f'[router]\nledger_url = "{url}"\n')
    assert "router.ledger_url" in message and problem in message
    assert "pw@" not in message


def test_a_shared_ledger_url_and_its_lease_are_read(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[router]\nledger_url = "postgresql://sr@db:5432/ledger"\nlease_ms = 5000\n')
    assert (cfg.router.ledger_url, cfg.router.lease_ms) == ("postgresql://sr@db:5432/ledger", 5000)
    assert "router.lease_ms" in error_of(tmp_path, "[router]\nlease_ms = 999\n")
