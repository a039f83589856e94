"""The local PostgreSQL server of the tests: fresh databases, durability across restarts, no leftovers."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psycopg
import pytest
from prerequisites import NO_POSTGRES, unavailable

from daemon import postgres_server as launcher
from daemon.errors import LocalPostgresError
from daemon.postgres_server import LocalPostgres

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def installed() -> None:
    """Skip (fail in CI) a test starting a server of its own when PostgreSQL is not installed."""
    if launcher.server_bindir() is None:
        unavailable(NO_POSTGRES)


@pytest.fixture
def own_server(installed: None, tmp_path: Path) -> LocalPostgres:
    """A server of the test's own (not the session's), for tests that restart, crash or stop it."""
    return LocalPostgres(log_dir=tmp_path, stop_grace_s=5.0)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def rows(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [text for (text,) in conn.execute("SELECT text FROM notes ORDER BY id")]


def test_a_test_gets_an_empty_database_on_a_durable_loopback_server(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://smartroute@127.0.0.1:")
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('fsync', 'synchronous_commit', 'listen_addresses', 'server_encoding')"
            ).fetchall()
        )
    assert tables == (0,)
    assert settings == {
        "fsync": "on",
        "synchronous_commit": "on",
        "listen_addresses": "127.0.0.1",
        "server_encoding": "UTF8",
    }


def test_two_databases_on_one_server_are_independent(postgres_server: LocalPostgres) -> None:
    first = postgres_server.create_database("independent_first")
    second = postgres_server.create_database("independent_second")
    try:
        for url, text in ((first, "in the first"), (second, "in the second")):
            with psycopg.connect(url) as conn:
                conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)")
                conn.execute("INSERT INTO notes (text) VALUES (%s)", (text,))
        assert rows(first) == ["in the first"]
        assert rows(second) == ["in the second"]
    finally:
        postgres_server.drop_database("independent_first")
        postgres_server.drop_database("independent_second")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(first).close()


def test_committed_rows_survive_a_fast_restart_and_a_crash_and_uncommitted_ones_do_not(
    own_server: LocalPostgres,
) -> None:
    with own_server:
        url = own_server.create_database("ledger")
        port = own_server.port
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)")
            conn.execute("INSERT INTO notes (text) VALUES ('before the restart')")

        own_server.restart()
        assert own_server.port == port
        assert rows(url) == ["before the restart"]

        with psycopg.connect(url) as conn:
            conn.execute("INSERT INTO notes (text) VALUES ('before the crash')")
        open_transaction = psycopg.connect(url)
        open_transaction.execute("INSERT INTO notes (text) VALUES ('never committed')")
        own_server.kill()
        own_server.restart()
        open_transaction.close()

        assert rows(url) == ["before the restart", "before the crash"]
        assert "automatic recovery in progress" in own_server.log_path.read_text()


def test_stop_ends_a_connected_session_and_leaves_no_process_and_no_directory(
    own_server: LocalPostgres,
) -> None:
    own_server.start()
    try:
        client = psycopg.connect(own_server.url)
        client.execute("BEGIN")  # an open transaction must not hold the fast shutdown back
        backend = client.info.backend_pid
        (data_directory,) = client.execute("SHOW data_directory").fetchone() or ("",)
        postmaster = int((Path(data_directory) / "postmaster.pid").read_text().split()[0])
        assert alive(postmaster) and alive(backend)
    finally:
        own_server.stop()
    client.close()

    assert not alive(postmaster)
    assert not alive(backend)
    assert not Path(data_directory).parent.exists()  # the whole temporary cluster directory
    assert own_server.log_path.parent.exists()  # a log_dir given is kept, for the record
    assert "database system is shut down" in own_server.log_path.read_text()
    own_server.stop()  # stopping again does nothing


def test_without_postgresql_start_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "server_bindir", lambda: None)
    with pytest.raises(LocalPostgresError, match="not installed: apt-get install -y postgresql"):
        LocalPostgres().start()


def test_a_server_that_cannot_start_is_an_error_quoting_its_log(installed: None, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: connecting to it is refused at once
        server = LocalPostgres(port=taken.getsockname()[1], log_dir=tmp_path)
        with pytest.raises(LocalPostgresError, match="exited at start") as raised:
            server.start()
    assert str(tmp_path / "postgres.log") in str(raised.value)
    assert "could not bind IPv4 address" in str(raised.value)


def executable(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)


def test_the_binaries_are_found_on_path_else_in_debians_newest_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    debian = tmp_path / "usr-lib-postgresql"
    for version in ("9.6", "13", "15"):
        executable(debian / version / "bin" / "initdb")
        executable(debian / version / "bin" / "postgres")
    executable(debian / "16" / "bin" / "initdb")  # a client-only leftover: no server binary
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    monkeypatch.setattr(launcher, "DEBIAN_ROOT", debian)
    monkeypatch.setenv("PATH", str(path_dir))

    assert launcher.server_bindir() == debian / "15" / "bin"

    built = tmp_path / "built" / "bin"
    executable(built / "initdb")
    executable(built / "postgres")
    (path_dir / "initdb").symlink_to(built / "initdb")
    assert launcher.server_bindir() == built

    monkeypatch.setattr(launcher, "DEBIAN_ROOT", tmp_path / "nowhere")
    (path_dir / "initdb").unlink()
    assert launcher.server_bindir() is None
