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
from dataclasses import fields
from pathlib import Path
from typing import Final

from daemon.config.kafka import SASL_PASSWORD_ENV, read_kafka
from daemon.config.model import Config
from daemon.config.paper import read_paper
from daemon.config.sections import (
    RouterConfig,
    read_cache,
    read_daemon,
    read_detector,
    read_risk,
    read_router,
)
from daemon.config.security import read_operators, read_security
from daemon.config.table import EnvOrigin, Table, config_error, show
from daemon.config.topics import TopicsConfig, read_topics
from daemon.config.users import read_users
from daemon.config.venues import read_venues
from daemon.errors import ConfigError

ENV_PREFIX: Final = "SMARTROUTE_"
_SECTIONS: Final = frozenset(f.name for f in fields(Config))


def load_config(path: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate the file at `path` (None: no file, defaults only) plus SMARTROUTE_* overrides."""
    raw = {} if path is None else _read_toml(Path(path))
    return build_config(raw, os.environ if environ is None else environ)


def build_config(raw: Mapping[str, object], environ: Mapping[str, str]) -> Config:
    """Validate a parsed TOML document, with the overrides and secrets found in `environ`, into a Config."""
    merged, origins = _apply_env_overrides(raw, environ)
    root = Table(merged, "", origins)
    for name in sorted(set(root.names()) - _SECTIONS):
        raise root.error(name, "unknown section")
    cfg = Config(
        daemon=read_daemon(root.table("daemon")),
        kafka=read_kafka(root.table("kafka"), environ),
        cache=read_cache(root.table("cache")),
        detector=read_detector(root.table("detector")),
        risk=read_risk(root.table("risk")),
        router=read_router(root.table("router")),
        paper=read_paper(root.table("paper")),
        topics=read_topics(root.table("topics")),
        venues=read_venues(root.table("venues")),
        users=read_users(root.table("users")),
        security=read_security(root.table("security")),
        operators=read_operators(root.table("operators")),
    )
    check_ledger_retention(cfg.router, cfg.topics)
    return cfg


def check_ledger_retention(router: RouterConfig, topics: TopicsConfig) -> None:
    """Refuse a ledger retention shorter than dedupe needs (README "Ledger retention").

    A request redelivered from the orders topic must still find its claim: the ledger keeps an
    answered request at least as long as the topic keeps it, plus `max_request_age_ms`.
    """
    kept, orders = router.ledger_retention_ms, topics.retention_ms["orders"]
    if kept == -1:
        return
    if orders == -1:
        raise ConfigError(
            f"router.ledger_retention_ms = {kept}: topics.retention_ms.orders is -1 (kept forever), so a "
            "request can be redelivered at any age and must always find its claim: set "
            "router.ledger_retention_ms = -1 too"
        )
    needed = orders + router.max_request_age_ms
    if kept < needed:
        raise ConfigError(
            f"router.ledger_retention_ms = {kept}: must be at least topics.retention_ms.orders ({orders}) + "
            f"router.max_request_age_ms ({router.max_request_age_ms}) = {needed}, so that a request "
            "redelivered from the orders topic still finds its claim in the ledger (or -1: kept forever)"
        )


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
