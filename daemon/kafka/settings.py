"""Kafka client settings from `[kafka]`, and starting a producer (idempotent where the cluster allows it).

options = client_options(cfg.kafka)             # keyword arguments of any aiokafka client
producer, idempotent = await start_producer(cfg.kafka, linger_ms=0)
producer = await start_plain_producer(cfg.kafka)  # a short-lived client's: acks="all", not idempotent
"""

from __future__ import annotations

import logging
import ssl
from typing import TypeAlias

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.admin import SaslAuthenticateRequest_v0, SaslAuthenticateRequest_v1

from daemon.config import KafkaConfig
from daemon.errors import ConfigError
from daemon.kafka.access import unreachable

log = structlog.get_logger(__name__)

Producer: TypeAlias = AIOKafkaProducer


class _NoSaslRequests(logging.Filter):
    """Drop aiokafka's DEBUG line of a SASL authentication request: with PLAIN its payload is the password.

    smartroute keeps library loggers at WARNING and up (`daemon.logs`); this holds wherever
    else a process sends aiokafka's DEBUG lines.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(
            isinstance(arg, (SaslAuthenticateRequest_v0, SaslAuthenticateRequest_v1)) for arg in args
        )


logging.getLogger("aiokafka.conn").addFilter(_NoSaslRequests())


def client_options(cfg: KafkaConfig) -> dict[str, object]:
    """Return the keyword arguments of aiokafka clients for `cfg` (with the SASL password: never log them)."""
    options: dict[str, object] = {
        "bootstrap_servers": list(cfg.bootstrap_servers),
        "client_id": cfg.client_id,
        "security_protocol": cfg.security_protocol,
        "request_timeout_ms": cfg.request_timeout_ms,
    }
    if cfg.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = cfg.sasl_mechanism
        options["sasl_plain_username"] = cfg.sasl_username
        options["sasl_plain_password"] = None if cfg.sasl_password is None else cfg.sasl_password.reveal()
    if cfg.security_protocol.endswith("SSL"):
        options["ssl_context"] = _ssl_context(cfg)
    return options


def _ssl_context(cfg: KafkaConfig) -> ssl.SSLContext:
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=cfg.ssl_cafile, certfile=cfg.ssl_certfile, keyfile=cfg.ssl_keyfile
        )
    except (OSError, ssl.SSLError) as exc:
        files = {
            "ssl_cafile": cfg.ssl_cafile,
            "ssl_certfile": cfg.ssl_certfile,
            "ssl_keyfile": cfg.ssl_keyfile,
        }
        named = ", ".join(f"kafka.{k}={v}" for k, v in files.items() if v is not None) or "system CAs"
        raise ConfigError(f"kafka TLS settings cannot be loaded ({named}): {exc}") from exc
    context.check_hostname = cfg.ssl_check_hostname
    return context


async def start_producer(cfg: KafkaConfig, **options: object) -> tuple[Producer, bool]:
    """Start an acks="all" producer, idempotent where the cluster supports it; return it and which.

    An idempotent producer asks the cluster for a producer id at start. A broker that refuses
    (Tansu; a cluster without the IDEMPOTENT_WRITE permission) gets a plain producer instead:
    retries may then duplicate a message, which smartroute's consumers already tolerate.
    Raise KafkaUnavailable if no bootstrap server answers, KafkaAccessDenied if one refuses the login.
    """
    try:
        producer = await _start(cfg, enable_idempotence=True, **options)
    except KafkaError as exc:
        log.warning("kafka_idempotence_unavailable", error=repr(exc))
        producer = await _start(cfg, enable_idempotence=False, **options)
        idempotent = False
    else:
        idempotent = True
    servers = list(cfg.bootstrap_servers)
    log.info("kafka_producer_started", bootstrap_servers=servers, idempotent=idempotent)
    return producer, idempotent


async def start_plain_producer(cfg: KafkaConfig) -> Producer:
    """Start an acks="all" producer without idempotence (a short-lived client's: the CLI, the demo)."""
    return await _start(cfg, enable_idempotence=False)


async def _start(cfg: KafkaConfig, **options: object) -> Producer:
    connection = client_options(cfg)
    producer = Producer(**connection, acks="all", **options)
    try:
        await producer.start()
    except BaseException as exc:
        await producer.stop()  # else aiokafka leaks its connections and warns "Unclosed AIOKafkaProducer"
        if isinstance(exc, KafkaConnectionError):
            raise await unreachable(cfg, connection, exc) from exc  # KafkaUnavailable, or a refused login
        raise
    return producer
