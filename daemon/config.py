"""Load the TOML config file plus SMARTROUTE_* environment overrides into one frozen, validated Config.

    SMARTROUTE_<SECTION>__<KEY>=value        e.g. SMARTROUTE_CACHE__TTL_MS=5000
    SMARTROUTE_VENUES__BINANCE__WS_URL=...   nested tables continue with `__`

A value is parsed as a TOML value when it is one (`5000`, `true`, `["BTC-USDT"]`), else taken as a
string. Every SMARTROUTE_* variable must map onto a known key; one that creates a `[venues.<id>]`
section enables that venue, as the section would. Secrets never live in the file: the
Kafka SASL password comes from SMARTROUTE_KAFKA__SASL_PASSWORD or `$CREDENTIALS_DIRECTORY/kafka_sasl_password`
(systemd `LoadCredential=`). Errors are `ConfigError`s naming the full key, and the variable if one set it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

from connectors.registry import ADAPTERS
from connectors.types import VENUE_IDS
from daemon.config_schema import (
    LOG_LEVELS,
    MODES,
    NO_TESTNET,
    RISK_TOLERANCES,
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
    STRATEGIES,
    SYMBOL_RE,
    TESTNET_ENDPOINTS,
    TOPIC_PREFIX_RE,
    USER_ID_RE,
    CacheConfig,
    Config,
    DaemonConfig,
    DetectorConfig,
    EnvOrigin,
    KafkaConfig,
    RiskConfig,
    RouterConfig,
    SaslMechanism,
    Secret,
    Table,
    UserConfig,
    VenueConfig,
    config_error,
    redacted_view,
    show,
)
from daemon.config_topics import TopicsConfig, read_topics
from daemon.errors import ConfigError

__all__ = [
    "CacheConfig",
    "Config",
    "ConfigError",
    "DaemonConfig",
    "DetectorConfig",
    "KafkaConfig",
    "RiskConfig",
    "RouterConfig",
    "Secret",
    "TopicsConfig",
    "UserConfig",
    "VenueConfig",
    "build_config",
    "load_config",
    "load_secret",
    "redacted_view",
]

ENV_PREFIX: Final = "SMARTROUTE_"
SASL_PASSWORD_ENV: Final = "SMARTROUTE_KAFKA__SASL_PASSWORD"
SASL_PASSWORD_CREDENTIAL: Final = "kafka_sasl_password"
_SASL_PASSWORD_HINT: Final = (
    f"set {SASL_PASSWORD_ENV} or the systemd credential {SASL_PASSWORD_CREDENTIAL} ($CREDENTIALS_DIRECTORY)"
)
_ZERO: Final = Decimal(0)


_SECTIONS = frozenset({"daemon", "kafka", "cache", "detector", "risk", "router", "venues", "users"})


def load_config(path: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate the file at `path` (None: no file, defaults only) plus SMARTROUTE_* overrides."""
    raw = {} if path is None else _read_toml(Path(path))
    return build_config(raw, os.environ if environ is None else environ)


def build_config(raw: Mapping[str, object], environ: Mapping[str, str]) -> Config:
    """Validate a parsed TOML document, with the overrides and secrets found in `environ`, into a Config."""
    merged, origins = _apply_env_overrides(raw, environ)
    root = Table(merged, "", origins)
    for name in sorted(
        set(root.names())
        - {"daemon", "kafka", "cache", "detector", "risk", "router", "topics", "venues", "users"}
    ):
        raise root.error(name, "unknown section")
    return Config(
        daemon=_daemon(root.table("daemon")),
        kafka=_kafka(root.table("kafka"), environ),
        cache=_cache(root.table("cache")),
        detector=_detector(root.table("detector")),
        risk=_risk(root.table("risk")),
        router=_router(root.table("router")),
        topics=read_topics(root.table("topics")),
        venues=_venues(root.table("venues")),
        users=_users(root.table("users")),
    )


def load_secret(env_var: str, credential: str, environ: Mapping[str, str]) -> Secret | None:
    """Return a secret from `env_var`, else `$CREDENTIALS_DIRECTORY/<credential>`; None if neither is set."""
    value = environ.get(env_var)
    if value is not None:
        if not value:
            raise ConfigError(f"{env_var} (environment): is set but empty")
        return Secret(value)
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / credential
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read credential {path}: {exc}") from exc
    text = text.removesuffix("\n").removesuffix("\r")  # files written by hand end with a newline
    if not text:
        raise ConfigError(f"credential {path} is empty")
    return Secret(text)


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except ValueError as exc:  # TOMLDecodeError, or bytes that are not UTF-8
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _apply_env_overrides(
    raw: Mapping[str, object], environ: Mapping[str, str]
) -> tuple[dict[str, object], dict[str, EnvOrigin]]:
    """Merge SMARTROUTE_* variables into a copy of `raw`, remembering which variable set which key."""
    merged = _thaw(raw)
    origins: dict[str, EnvOrigin] = {}
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable == SASL_PASSWORD_ENV:
            continue
        parts = variable[len(ENV_PREFIX) :].split("__")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"{variable} (environment): not a config override; expected {ENV_PREFIX}<SECTION>__<KEY>"
            )
        text = environ[variable]
        _set_path(merged, parts, _parse_env_value(text), EnvOrigin(variable, text), origins)
    return merged, origins


def _thaw(value: Mapping[str, object]) -> dict[str, object]:
    return {k: _thaw(v) if isinstance(v, Mapping) else v for k, v in value.items()}


def _set_path(
    tree: dict[str, object], parts: list[str], value: object, origin: EnvOrigin, origins: dict[str, EnvOrigin]
) -> None:
    node = tree
    path = ""
    for depth, part in enumerate(parts):
        # Match existing keys case-insensitively so SMARTROUTE_USERS__ALICE__... reaches [users.Alice].
        matches = [k for k in node if k.lower() == part.lower()]
        if len(matches) > 1:
            raise config_error(path or part, f"ambiguous: keys {show(matches)} differ only in case", {})
        key = matches[0] if matches else part.lower()
        path = f"{path}.{key}" if path else key
        if depth == len(parts) - 1:
            node[key] = value
            origins[path] = origin
            return
        child = node.get(key)
        if child is None:
            child = node[key] = {}
            origins.setdefault(path, origin)
        if not isinstance(child, dict):
            raise config_error(path, f"is {show(child)}, not a table", {path: origin})
        node = child


def _parse_env_value(text: str) -> object:
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return parsed["v"] if set(parsed) == {"v"} else text


def _daemon(t: Table) -> DaemonConfig:
    d = DaemonConfig()
    cfg = DaemonConfig(
        mode=t.choice("mode", MODES, d.mode),
        http_port=t.integer("http_port", d.http_port, minimum=0, maximum=65535),
        http_host=t.string("http_host", d.http_host),
        state_dir=Path(t.string("state_dir", str(d.state_dir))),
        log_level=t.choice("log_level", LOG_LEVELS, d.log_level),
        shutdown_timeout_ms=t.integer("shutdown_timeout_ms", d.shutdown_timeout_ms, minimum=1),
    )
    t.finish()
    return cfg


def _kafka(t: Table, environ: Mapping[str, str]) -> KafkaConfig:
    d = KafkaConfig()
    protocol = t.choice("security_protocol", SECURITY_PROTOCOLS, d.security_protocol)
    mechanism, username, password = _kafka_sasl(t, protocol, environ)
    cafile, certfile, keyfile = _kafka_ssl_files(t, protocol)
    cfg = KafkaConfig(
        bootstrap_servers=_bootstrap_servers(t),
        client_id=t.string("client_id", d.client_id),
        topic_prefix=_topic_prefix(t, d.topic_prefix),
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=username,
        sasl_password=password,
        ssl_cafile=cafile,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        ssl_check_hostname=t.boolean("ssl_check_hostname", d.ssl_check_hostname),
        send_buffer=t.integer("send_buffer", d.send_buffer, minimum=1),
        linger_ms=t.integer("linger_ms", d.linger_ms, minimum=0),
        request_timeout_ms=t.integer("request_timeout_ms", d.request_timeout_ms, minimum=1),
    )
    t.finish()
    return cfg


def _kafka_sasl(
    t: Table, protocol: str, environ: Mapping[str, str]
) -> tuple[SaslMechanism | None, str | None, Secret | None]:
    if t.has("sasl_password"):
        raise t.error("sasl_password", f"secrets never live in the config file; {_SASL_PASSWORD_HINT}")
    t.value("sasl_password")
    if not protocol.startswith("SASL_"):
        message = f"only used with security_protocol SASL_PLAINTEXT or SASL_SSL, not {protocol}"
        for name in ("sasl_mechanism", "sasl_username"):
            if t.has(name):
                raise t.error(name, message)
        if SASL_PASSWORD_ENV in environ:
            origin = {t.key("sasl_password"): EnvOrigin(SASL_PASSWORD_ENV, "")}
            raise config_error(t.key("sasl_password"), message, origin)
        return None, None, None
    mechanism = t.optional_choice("sasl_mechanism", SASL_MECHANISMS)
    username = t.optional_string("sasl_username")
    password = load_secret(SASL_PASSWORD_ENV, SASL_PASSWORD_CREDENTIAL, environ)
    for name, value in (("sasl_mechanism", mechanism), ("sasl_username", username)):
        if value is None:
            raise t.error(name, f"required with security_protocol {protocol}")
    if password is None:
        raise t.error("sasl_password", f"required with security_protocol {protocol}; {_SASL_PASSWORD_HINT}")
    return mechanism, username, password


def _kafka_ssl_files(t: Table, protocol: str) -> tuple[Path | None, Path | None, Path | None]:
    if not protocol.endswith("SSL"):
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if t.has(name):
                raise t.error(name, f"only used with security_protocol SSL or SASL_SSL, not {protocol}")
    cafile, certfile, keyfile = (_existing_file(t, f"ssl_{kind}file") for kind in ("ca", "cert", "key"))
    if keyfile is not None and certfile is None:
        raise t.error("ssl_keyfile", f"needs {t.key('ssl_certfile')} as well")
    return cafile, certfile, keyfile


def _bootstrap_servers(t: Table) -> tuple[str, ...]:
    raw = t.value("bootstrap_servers")
    if raw is None:
        return KafkaConfig().bootstrap_servers
    if isinstance(raw, str):
        servers = [s.strip() for s in raw.split(",")]
    elif isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        servers = [s.strip() for s in raw]
    else:
        raise t.error("bootstrap_servers", f"must be a string or a list of strings, got {show(raw)}")
    if not servers:
        raise t.error("bootstrap_servers", "must name at least one server")
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise t.error("bootstrap_servers", f'each server must be "host:port", got {show(server)}')
    return tuple(servers)


def _topic_prefix(t: Table, default: str) -> str:
    raw = t.text("topic_prefix")
    if raw is None:
        return default
    if not isinstance(raw, str) or not TOPIC_PREFIX_RE.fullmatch(raw):
        raise t.error("topic_prefix", f"must be at most 200 characters of A-Z a-z 0-9 . _ -, got {show(raw)}")
    return raw


def _existing_file(t: Table, name: str) -> Path | None:
    text = t.optional_string(name)
    if text is None:
        return None
    path = Path(text)
    if not path.is_file():
        raise t.error(name, f"file not found: {path}")
    return path


def _cache(t: Table) -> CacheConfig:
    d = CacheConfig()
    ttl_ms = t.integer("ttl_ms", d.ttl_ms, minimum=1)
    max_age_ms = t.integer("max_quote_age_ms", d.max_quote_age_ms, minimum=1)
    if max_age_ms > ttl_ms:
        raise t.error("max_quote_age_ms", f"must be ≤ {t.key('ttl_ms')} ({ttl_ms}), got {max_age_ms}")
    t.finish()
    return CacheConfig(ttl_ms=ttl_ms, max_quote_age_ms=max_age_ms)


def _risk(t: Table) -> RiskConfig:
    d = RiskConfig()
    cfg = RiskConfig(
        max_order_notional=t.decimal("max_order_notional", d.max_order_notional, minimum=_ZERO, strict=True),
        max_orders_per_second=t.integer("max_orders_per_second", d.max_orders_per_second, minimum=1),
        max_venue_exposure=t.decimal("max_venue_exposure", d.max_venue_exposure, minimum=_ZERO, strict=True),
    )
    t.finish()
    return cfg


def _router(t: Table) -> RouterConfig:
    d = RouterConfig()
    group_id = t.string("group_id", d.group_id)
    if not group_id or len(group_id) > 200:
        raise t.error("group_id", f"must be 1..200 characters, got {show(group_id)}")
    cfg = RouterConfig(
        enabled=t.boolean("enabled", d.enabled),
        group_id=group_id,
        residual_policy=t.choice("residual_policy", ("unwind", "report"), "unwind"),
        session_timeout_ms=t.integer(
            "session_timeout_ms", d.session_timeout_ms, minimum=1000, maximum=300_000
        ),
        max_batch=t.integer("max_batch", d.max_batch, minimum=1, maximum=10_000),
    )
    t.finish()
    return cfg


def _detector(t: Table) -> DetectorConfig:
    d = DetectorConfig()
    cfg = DetectorConfig(
        enabled=t.boolean("enabled", d.enabled),
        min_net_profit_bps=t.decimal("min_net_profit_bps", d.min_net_profit_bps, minimum=_ZERO),
        max_notional=t.decimal("max_notional", d.max_notional, minimum=_ZERO, strict=True),
        update_min_change_bps=t.decimal("update_min_change_bps", d.update_min_change_bps, minimum=_ZERO),
        sweep_interval_ms=t.integer("sweep_interval_ms", d.sweep_interval_ms, minimum=1),
    )
    t.finish()
    return cfg


def _venues(t: Table) -> Mapping[str, VenueConfig]:
    for name in t.names():
        if name not in VENUE_IDS:
            raise t.error(name, f"unknown venue; known venues: {', '.join(VENUE_IDS)}")
    configs = {v: _venue(t.table(v), v) if t.has(v) else VenueConfig.default(v) for v in VENUE_IDS}
    return MappingProxyType(configs)


def _venue(t: Table, venue: str) -> VenueConfig:
    d = VenueConfig.default(venue)
    symbols = t.string_list("symbols", d.symbols)
    if not symbols:
        raise t.error("symbols", "must name at least one symbol")
    for symbol in symbols:
        if not SYMBOL_RE.fullmatch(symbol):
            expected = 'canonical BASE-QUOTE upper case like "BTC-USDT"'
            raise t.error("symbols", f"must be {expected}, got {show(symbol)}")
    testnet = t.boolean("testnet", d.testnet)
    if testnet and venue in NO_TESTNET:
        raise t.error("testnet", NO_TESTNET[venue])
    if testnet and venue not in TESTNET_ENDPOINTS:
        raise t.error("testnet", f"no testnet endpoints are known for {venue}")
    net = TESTNET_ENDPOINTS[venue] if testnet else None
    ws_default, rest_default = (net.ws_url, net.rest_url) if net else (d.ws_url, d.rest_url)
    rest_url = _url(t, "rest_url", rest_default, ("http", "https"))
    trade_default = net.trade_url if net and not t.has("rest_url") else rest_url
    cfg = VenueConfig(
        venue=venue,
        enabled=t.boolean("enabled", True),  # a present section means "use this venue" unless it says not
        symbols=symbols,
        ws_url=_url(t, "ws_url", ws_default, ("ws", "wss")),
        rest_url=rest_url,
        taker_fee_bps=t.decimal("taker_fee_bps", d.taker_fee_bps, minimum=_ZERO),
        maker_fee_bps=t.decimal("maker_fee_bps", d.maker_fee_bps, minimum=_ZERO),
        silence_timeout_ms=t.integer("silence_timeout_ms", d.silence_timeout_ms, minimum=1),
        testnet=testnet,
        recv_window_ms=t.integer("recv_window_ms", d.recv_window_ms, minimum=1, maximum=60_000),
        depth=_depth(t, venue),
        trade=t.boolean("trade", d.trade),
        trade_url=_url(t, "trade_url", trade_default, ("http", "https")),
    )
    t.finish()
    return cfg


def _depth(t: Table, venue: str) -> int | None:
    if not t.has("depth"):
        return None
    limit = ADAPTERS[venue].max_depth
    if limit is None:
        raise t.error("depth", f"{venue} streams the best bid and offer only; remove the key")
    return t.integer("depth", 0, minimum=1, maximum=limit)


def _url(t: Table, name: str, default: str, schemes: tuple[str, str]) -> str:
    url = t.string(name, default)
    try:
        parts = urlsplit(url)
        valid = parts.scheme in schemes and bool(parts.hostname)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        valid = False
    if not valid:
        raise t.error(name, f"must be a {schemes[0]}:// or {schemes[1]}:// URL with a host, got {show(url)}")
    return url


def _users(t: Table) -> Mapping[str, UserConfig]:
    users = {}
    for user_id in sorted(t.names()):
        if not USER_ID_RE.fullmatch(user_id):
            raise t.error(user_id, "a user id is 1 to 64 characters of A-Z a-z 0-9 . _ : -")
        users[user_id] = _user(t.table(user_id), user_id)
    return MappingProxyType(users)


def _user(t: Table, user_id: str) -> UserConfig:
    d = UserConfig(user_id=user_id)
    preferred = _venue_list(t, "preferred_venues")
    excluded = _venue_list(t, "excluded_venues")
    overlap = [v for v in excluded if v in preferred]
    if overlap:
        raise t.error("excluded_venues", f"must not name a preferred venue, got {show(overlap)}")
    cfg = UserConfig(
        user_id=user_id,
        preferred_venues=preferred,
        excluded_venues=excluded,
        preferred_bias_bps=t.decimal("preferred_bias_bps", d.preferred_bias_bps, minimum=_ZERO),
        risk_tolerance=t.choice("risk_tolerance", RISK_TOLERANCES, d.risk_tolerance),
        max_slippage_bps=t.optional_decimal("max_slippage_bps", minimum=_ZERO, strict=True),
        max_order_notional=t.optional_decimal("max_order_notional", minimum=_ZERO, strict=True),
        strategy=t.choice("strategy", STRATEGIES, d.strategy),
    )
    t.finish()
    return cfg


def _venue_list(t: Table, name: str) -> tuple[str, ...]:
    venues = t.string_list(name, ())
    for venue in venues:
        if venue not in VENUE_IDS:
            raise t.error(name, f"unknown venue {show(venue)}; known venues: {', '.join(VENUE_IDS)}")
    return venues
