"""`[kafka]`: how to reach the cluster (TLS, SASL), and its reader; the SASL password is never in the file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from daemon.config.secret import Secret, load_secret
from daemon.config.table import EnvOrigin, Table, config_error, show

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SECURITY_PROTOCOLS: Final[tuple[SecurityProtocol, ...]] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final[tuple[SaslMechanism, ...]] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
TOPIC_PREFIX_RE: Final = re.compile(r"[A-Za-z0-9._-]{0,200}")

SASL_PASSWORD_ENV: Final = "SMARTROUTE_KAFKA__SASL_PASSWORD"
SASL_PASSWORD_CREDENTIAL: Final = "kafka_sasl_password"
_SASL_PASSWORD_HINT: Final = (
    f"set {SASL_PASSWORD_ENV} or the systemd credential {SASL_PASSWORD_CREDENTIAL} ($CREDENTIALS_DIRECTORY)"
)


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """`[kafka]`: how to reach the cluster. `sasl_password` comes only from the environment or credentials."""

    bootstrap_servers: tuple[str, ...] = ("127.0.0.1:9092",)
    client_id: str = "smartroute"
    topic_prefix: str = "smartroute."
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    send_buffer: int = 10_000  # messages
    linger_ms: int = 5
    request_timeout_ms: int = 30_000

    def topic(self, name: str) -> str:
        """Return the full topic name, e.g. `topic("opportunities")` → `smartroute.opportunities`."""
        return self.topic_prefix + name


def read_kafka(t: Table, environ: Mapping[str, str]) -> KafkaConfig:
    """Validate the `[kafka]` table; the SASL password comes from `environ` or a credential file."""
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
