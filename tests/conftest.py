"""Fixtures shared by the whole suite.

embedded_broker  the bootstrap address ("127.0.0.1:PORT") of a Kafka broker shared by the session,
                 parametrised: every test using it runs on Tansu (memory only, embedded) and on
                 Apache Kafka (a real KRaft broker; those runs carry the `apache_kafka` marker).
                 Each broker starts once per session, when the first test needs it. Tests share
                 it, so each uses its own topics and consumer groups.
tansu_broker, apache_kafka
                 the two brokers themselves; a test only one of them can support asks for it
                 directly and says why in its docstring.
secure_kafka     an Apache Kafka broker secured as in production: TLS, SASL/SCRAM-SHA-512, the
                 StandardAuthorizer (tests/integration/secure_kafka.py); for tests of ACLs and secrets.
kafka_topic      a topic name no other test uses; created (1 partition) on the test's broker
                 when the test uses `embedded_broker`.
postgres_server  a PostgreSQL server shared by the session (daemon.postgres_server.LocalPostgres,
                 Debian's package; its log is postgres*/postgres.log in the session's temporary
                 directory); tests using it carry the `postgres` marker.
postgres_url     the URL of an empty database of the test's own on that server, dropped after it.

Apache Kafka runs as production clusters do, with `auto.create.topics.enable=false`: a test
creates every topic it uses (`kafka_topic`, `kafka_support.create_contract_topics(bootstrap,
prefix)` for a daemon's topics). Tansu auto-creates a topic on first use; a consumer group gets
its partitions only after about half of `session_timeout_ms` there (keep it small).

Without Java, the Apache Kafka runs are skipped and the summary says in one line how to enable
them; in CI (CI=true) a skipped `apache_kafka` test is a failure. Without PostgreSQL the tests
on it are skipped, saying how to install it, and fail in CI likewise.
"""

from __future__ import annotations

import decimal
import io
import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from prerequisites import NO_POSTGRES, in_ci, unavailable

from daemon.apache_kafka import ApacheKafka
from daemon.broker import EmbeddedBroker
from daemon.kafka_jars import jar_dir, java_binary
from daemon.logs import configure_logging
from daemon.postgres_server import LocalPostgres, server_bindir
from router.ledger import Lease, Ledger
from router.ledger.postgres import PostgresStore

# `make test` runs on pytest-xdist workers, with every Apache Kafka test on one of them.
pytest_plugins = ["xdist_groups"]

NO_JAVA = (
    "apache_kafka tests skipped: they need Java 17+ (and Maven, once, to fetch the Kafka jars); "
    "to run them: apt-get install -y openjdk-17-jre-headless maven (or bash .ci/run)"
)
_skipped_for_java: list[str] = []
_apache_kafka_logs: list[str] = []


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run one embedded Tansu broker for the session and yield its bootstrap address."""
    broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("tansu") / "broker.log")
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """Run one Apache Kafka broker (KRaft) for the session; its log is apache-kafka*/broker-1.log."""
    if java_binary() is None or (not jar_dir().is_dir() and shutil.which("mvn") is None):
        unavailable(NO_JAVA)
    broker = ApacheKafka(log_dir=tmp_path_factory.mktemp("apache-kafka"), stop_grace_s=5.0)
    broker.start()
    _apache_kafka_logs.extend(str(path) for path in broker.log_paths)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Run one secured Apache Kafka broker for the session (a `secure_kafka.SecureKafka`)."""
    if java_binary() is None or (not jar_dir().is_dir() and shutil.which("mvn") is None):
        unavailable(NO_JAVA)
    from secure_kafka import secure_kafka as start_secure_kafka

    with start_secure_kafka(tmp_path_factory.mktemp("secure-kafka")) as cluster:
        _apache_kafka_logs.extend(str(path) for path in cluster.broker.log_paths)
        yield cluster


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """Run one PostgreSQL server for the session; its log is postgres*/postgres.log."""
    if server_bindir() is None:
        unavailable(NO_POSTGRES)
    with LocalPostgres(log_dir=tmp_path_factory.mktemp("postgres"), stop_grace_s=5.0) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: LocalPostgres) -> Iterator[str]:
    """Return the URL of a new, empty database on the session's PostgreSQL server; drop it after the test."""
    name = f"test_{uuid.uuid4().hex}"
    yield postgres_server.create_database(name)
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def any_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """Open an empty ledger: the SQLite file in a state_dir, then a PostgreSQL database (shared)."""
    if request.param == "sqlite":
        with Ledger.open(tmp_path / "state") as opened:
            yield opened
    else:
        url = request.getfixturevalue("postgres_url")
        with Ledger(PostgresStore(url), Lease("router-a", 60_000)) as opened:
            yield opened


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test on the session's PostgreSQL server `postgres`, so `-m postgres` selects them."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        params = getattr(item, "callspec", None)
        on_postgres = params is not None and params.params.get("any_ledger") == "postgres"
        if "postgres_server" in names and ("any_ledger" not in names or on_postgres):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(
    scope="session",
    params=["tansu", pytest.param("apache_kafka", marks=pytest.mark.apache_kafka)],
)
def embedded_broker(request: pytest.FixtureRequest) -> str:
    """Yield the bootstrap address of the session's Tansu broker, then of its Apache Kafka broker."""
    if request.param == "tansu":
        address: str = request.getfixturevalue("tansu_broker")
        return address
    broker: ApacheKafka = request.getfixturevalue("apache_kafka")
    return broker.bootstrap_servers


@pytest.fixture
def kafka_topic(request: pytest.FixtureRequest) -> str:
    """Return a topic name unique to this test, created on `embedded_broker` if the test uses it."""
    name = f"test.{uuid.uuid4().hex}"
    if "embedded_broker" in request.fixturenames:
        from kafka_support import create_topics_now

        create_topics_now(request.getfixturevalue("embedded_broker"), [name])
    return name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[pytest.TestReport | None]:
    """For apache_kafka tests: point a failure at the broker log; in CI, report a skip as a failure."""
    report: pytest.TestReport = yield
    if item.get_closest_marker("apache_kafka") is None:
        return report
    if report.failed and _apache_kafka_logs:
        report.sections.append(("Apache Kafka", "broker logs: " + ", ".join(_apache_kafka_logs)))
    if report.skipped and in_ci():
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} was skipped ({report.longrepr}); CI must run every apache_kafka test"
        )
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count the apache_kafka tests skipped for want of Java (under pytest-xdist: in the controller)."""
    if report.skipped and "apache_kafka" in report.keywords and NO_JAVA in str(report.longrepr):
        _skipped_for_java.append(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say in one line that the Apache Kafka tests were skipped, and how to run them."""
    if _skipped_for_java:
        terminalreporter.write_line(f"{len(_skipped_for_java)} {NO_JAVA}", yellow=True)


def _decimal_settings(context: decimal.Context) -> tuple[object, ...]:
    return (context.prec, context.rounding, context.Emin, context.Emax, dict(context.traps))


@pytest.fixture(autouse=True)
def decimal_context_untouched() -> Iterator[None]:
    """Fail a test that leaves the process-wide Decimal context changed, and restore it.

    Money math runs in the ambient context; a library that rewrites it (ccxt does, in
    place) would silently change every later result. The offender is named here.
    """
    context = decimal.getcontext()
    before = _decimal_settings(context)
    saved = context.copy()
    yield
    after = _decimal_settings(decimal.getcontext())
    if after != before:
        decimal.setcontext(saved)
        pytest.fail(f"this test changed the process-wide Decimal context: {before} -> {after}")


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Send every log line, DEBUG and up, of smartroute and every library to a buffer."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("debug", stream)
    root.setLevel(logging.DEBUG)  # libraries too, not only WARNING and up
    yield stream
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
