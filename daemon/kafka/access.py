"""What a secured cluster refused, said in smartroute's words: the login, or the ACL a principal lacks.

    raise await unreachable(cfg, options, exc)       # a client that could not bootstrap: why?
    raise denied(exc, cfg, "READ", group=group_id)   # GroupAuthorizationFailed → KafkaAccessDenied
    raise denied(exc, cfg, "WRITE", topics=[topic])  # TopicAuthorizationFailed → KafkaAccessDenied

aiokafka reports a failed SASL login only as "Unable to bootstrap" (the cause is logged, not
raised). `unreachable` connects once more to each bootstrap server to learn why, and names
the server, the user and the mechanism: never the password. `denied` turns the broker's
authorization errors into KafkaAccessDenied naming the principal, the topic or group, and the
ACL (operation) it needs.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping

from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)

from daemon.config import KafkaConfig
from daemon.config.kafka import SASL_PASSWORD_CREDENTIAL, SASL_PASSWORD_ENV
from daemon.errors import KafkaAccessDenied, KafkaUnavailable

AUTHORIZATION_ERRORS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)

_DIAGNOSIS_TIMEOUT_S = 5.0  # a refused login answers at once; a silent server was already waited for
_CONNECTION_OPTIONS = (
    "client_id",
    "request_timeout_ms",
    "ssl_context",
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
)


def principal(cfg: KafkaConfig) -> str:
    """Return who this client is to the broker: `User:<sasl_username>`, or the listener's default."""
    if cfg.sasl_username is not None:
        return f"User:{cfg.sasl_username}"
    return "this client's principal"


async def unreachable(cfg: KafkaConfig, options: Mapping[str, object], exc: Exception) -> Exception:
    """Return the error to raise for a client whose bootstrap failed with `exc`.

    KafkaAccessDenied if a broker refused the SASL login; otherwise KafkaUnavailable, saying
    what each server answered (a TLS failure names the CA file to check).
    """
    servers = ",".join(cfg.bootstrap_servers)
    if cfg.security_protocol == "PLAINTEXT":  # no login, no handshake: nothing more to learn
        return KafkaUnavailable(f"no Kafka broker answered at {servers}: {exc}")
    answers = []
    for server in cfg.bootstrap_servers:
        answer = await _try_login(server, options)
        if isinstance(answer, SaslAuthenticationFailed):
            return KafkaAccessDenied(
                f"Kafka at {server} refused the SASL login of {principal(cfg)} ({cfg.sasl_mechanism}): "
                f"{type(answer).__name__}: {_message(answer)}; check kafka.sasl_username and the password "
                f"({SASL_PASSWORD_ENV} or the credential {SASL_PASSWORD_CREDENTIAL})"
            )
        if answer is not None:
            answers.append(f"{server}: {answer}")
    detail = "; ".join(answers) if answers else f"{type(exc).__name__}: {exc}"
    return KafkaUnavailable(f"no Kafka broker answered at {servers}: {detail}")


async def _try_login(server: str, options: Mapping[str, object]) -> Exception | str | None:
    """Connect to `server` as a client would; return what went wrong (None: nothing did, this time)."""
    host, _, port = server.rpartition(":")
    kwargs = {key: options[key] for key in _CONNECTION_OPTIONS if key in options}
    try:
        async with asyncio.timeout(_DIAGNOSIS_TIMEOUT_S):
            conn = await create_conn(host, int(port), **kwargs)
    except SaslAuthenticationFailed as exc:
        refused: Exception = exc
        return refused
    except ssl.SSLError as exc:
        return f"TLS handshake failed ({exc.reason or exc}): check kafka.ssl_cafile and ssl_check_hostname"
    except TimeoutError:
        return f"no answer within {_DIAGNOSIS_TIMEOUT_S:g} s"
    except (OSError, KafkaError) as exc:
        return f"{type(exc).__name__}: {exc}"
    conn.close()
    return None


def denied(
    exc: KafkaError,
    cfg: KafkaConfig,
    operation: str,
    *,
    topics: Iterable[str] = (),
    group: str | None = None,
) -> KafkaAccessDenied:
    """Return KafkaAccessDenied for an authorization error met while doing `operation` on topics or group."""
    if isinstance(exc, GroupAuthorizationFailedError) and group is not None:
        resource = f"consumer group {group}"
        acl = f"the READ ACL on group {group}"
    elif isinstance(exc, ClusterAuthorizationFailedError):
        resource = "the cluster"
        acl = f"the {operation} ACL on the cluster"
    else:
        named = ", ".join(topics) or "the topic"
        resource = f"topic {named}"
        acl = f"the {operation} ACL on topic {named}"
    return KafkaAccessDenied(
        f"Kafka refused {principal(cfg)} access to {resource} ({type(exc).__name__}): it needs {acl} "
        "(deploy/kafka-acls.sh lists each role's ACLs)"
    )


def _message(exc: KafkaError) -> str:
    return str(exc.args[0]) if exc.args else exc.description
