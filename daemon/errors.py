"""Errors of the runtime layer, under the project's root `connectors.errors.SmartrouteError`.

    SmartrouteError
     └── daemon.errors.*
          ├── ConfigError            the config file or a SMARTROUTE_* variable is missing or invalid
          ├── KafkaUnavailable       the Kafka cluster could not be reached at start
          ├── KafkaAccessDenied      the cluster refused the SASL login, or an ACL the principal lacks
          ├── TopicsMissing          a topic this process needs does not exist (or may not be read)
          ├── EmbeddedBrokerError    a test/demo broker (Tansu, Apache Kafka) could not be started
          └── LocalPostgresError     the test/bench PostgreSQL server is not installed or did not start

Foreign errors (aiokafka, tomllib, OS errors) are mapped at the boundary with `raise ... from exc`.
"""

from __future__ import annotations

from connectors.errors import SmartrouteError


class ConfigError(SmartrouteError):
    """The configuration is invalid; the message names the offending key (and variable, if any)."""


class KafkaUnavailable(SmartrouteError):
    """No broker of the configured bootstrap servers answered at start."""


class KafkaAccessDenied(SmartrouteError):
    """The cluster refused this client: its SASL login, or an operation its principal has no ACL for.

    The message names the server or the topic/group, and the operation (ACL) needed; never a secret.
    """


class TopicsMissing(SmartrouteError):
    """A topic the process needs is missing on a cluster that does not auto-create; the message names it."""


class EmbeddedBrokerError(SmartrouteError):
    """The embedded Tansu broker is not installed, did not start, or did not become ready."""


class LocalPostgresError(SmartrouteError):
    """The local PostgreSQL server of the tests (daemon.postgres_server) is not installed or did not start."""
