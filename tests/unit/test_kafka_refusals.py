"""What a secured cluster refused, in smartroute's words (`daemon.kafka.access`), and no SASL request logged.

The real refusals (a wrong password, a missing ACL on a group or topic) are met on a secured
Apache Kafka in tests/integration/test_kafka_acls.py; this is the mapping itself.
"""

from __future__ import annotations

import logging

import pytest
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from aiokafka.protocol.admin import SaslAuthenticateRequest_v1

from daemon.config import KafkaConfig, Secret
from daemon.errors import KafkaUnavailable
from daemon.kafka import client_options, denied
from daemon.kafka.access import unreachable

ROUTER = KafkaConfig(
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="smartroute-router",
    sasl_password=Secret("s3cret-canary"),
)
ACLS = "(deploy/kafka-acls.sh lists each role's ACLs)"


@pytest.mark.parametrize(
    ("error", "operation", "topics", "group", "says"),
    [
        (
            GroupAuthorizationFailedError(),
            "READ",
            [],
            "smartroute-router",
            "access to consumer group smartroute-router (GroupAuthorizationFailedError): "
            "it needs the READ ACL on group smartroute-router",
        ),
        (
            TopicAuthorizationFailedError(),
            "WRITE",
            ["smartroute.orders"],
            None,
            "access to topic smartroute.orders (TopicAuthorizationFailedError): "
            "it needs the WRITE ACL on topic smartroute.orders",
        ),
        (
            ClusterAuthorizationFailedError(),
            "IDEMPOTENT_WRITE",
            [],
            None,
            "access to the cluster (ClusterAuthorizationFailedError): "
            "it needs the IDEMPOTENT_WRITE ACL on the cluster",
        ),
    ],
)
def test_an_authorization_error_names_the_principal_the_resource_and_the_acl(
    error: KafkaError, operation: str, topics: list[str], group: str | None, says: str
) -> None:
    refusal = denied(error, ROUTER, operation, topics=topics, group=group)
    assert str(refusal) == f"Kafka refused User:smartroute-router {says} {ACLS}"
    assert "s3cret-canary" not in str(refusal)


def test_without_sasl_the_principal_is_the_listeners_own() -> None:
    refusal = denied(TopicAuthorizationFailedError(), KafkaConfig(), "READ", topics=["t"])
    assert str(refusal).startswith("Kafka refused this client's principal access to topic t")


async def test_a_plaintext_client_that_could_not_bootstrap_is_unavailable_without_a_second_try() -> None:
    cfg = KafkaConfig(bootstrap_servers=("127.0.0.1:9",))
    error = await unreachable(cfg, client_options(cfg), KafkaConnectionError("Unable to bootstrap"))
    assert isinstance(error, KafkaUnavailable)
    assert str(error) == "no Kafka broker answered at 127.0.0.1:9: KafkaConnectionError: Unable to bootstrap"


async def test_a_secured_client_that_could_not_bootstrap_says_what_each_server_answered() -> None:
    cfg = KafkaConfig(
        bootstrap_servers=("127.0.0.1:9",),
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=Secret("s3cret-canary"),
    )
    error = await unreachable(cfg, client_options(cfg), KafkaConnectionError("Unable to bootstrap"))
    assert isinstance(error, KafkaUnavailable)
    assert str(error).startswith("no Kafka broker answered at 127.0.0.1:9: 127.0.0.1:9: ")
    assert "Connect call failed" in str(error) and "s3cret-canary" not in str(error)


def test_aiokafkas_debug_line_of_a_sasl_request_is_dropped_and_others_kept() -> None:
    logger = logging.getLogger("aiokafka.conn")
    plain = SaslAuthenticateRequest_v1(sasl_auth_bytes=b"\0u\0s3cret-canary")
    sasl = logger.makeRecord(logger.name, logging.DEBUG, "conn.py", 1, "Request %s: %s", (1, plain), None)
    other = logger.makeRecord(logger.name, logging.DEBUG, "conn.py", 1, "Request %s: %s", (2, "x"), None)
    assert [logger.filter(record) for record in (sasl, other)] == [False, True]
