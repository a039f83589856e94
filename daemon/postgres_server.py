"""Run a local PostgreSQL server for tests and benchmarks: a throwaway cluster on a free loopback port.

    with LocalPostgres(log_dir=tmp) as server:            # or `async with`, or start()/stop()
        url = server.create_database("ledger_test")       # a fresh, empty database
        with psycopg.connect(url) as conn: ...
        server.kill()                                     # SIGKILL every server process, as a crash would ...
        server.restart()                                  # ... and start again on the same port and data

The server binaries come from Debian's `postgresql` package: `initdb` and `postgres` on PATH, else
in `pg_config --bindir`, else in the newest `/usr/lib/postgresql/<version>/bin` (where Debian
installs them, off PATH). `initdb` writes the cluster into a temporary directory removed at stop
(trust authentication, superuser `smartroute`, UTF8, locale C); the server listens on 127.0.0.1
only, its unix socket in that directory. Durability is as in production, since the ledger's is what
the tests exercise: fsync and synchronous_commit stay on (only initdb skips its final sync).

PostgreSQL refuses to run as root: as root, initdb and the server run as the `postgres` system
user (the package creates it), which owns the temporary directory. The server logs to `log_path`
(`log_dir/postgres.log`, kept after stop when `log_dir` is given). stop() sends SIGINT (fast
shutdown: sessions are ended, open transactions roll back, a checkpoint is written) and SIGKILLs
the server's process group after `stop_grace_s`; a finalizer does the same at interpreter exit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Final, TypedDict
from urllib.parse import quote

import psycopg
import structlog
from psycopg import sql

from daemon.broker import LocalBroker, free_port, tail
from daemon.errors import LocalPostgresError

log = structlog.get_logger(__name__)

USER: Final = "smartroute"  # the cluster's superuser; trust authentication, so no password
NOT_INSTALLED: Final = (
    "PostgreSQL's server (initdb, postgres) is not installed: apt-get install -y postgresql"
)
DEBIAN_ROOT: Final = Path("/usr/lib/postgresql")  # Debian's <version>/bin directories
_SYSTEM_USER: Final = "postgres"
_PROBE_INTERVAL_S: Final = 0.05
_START_ATTEMPTS: Final = 3  # a free port can be taken by another process before the server binds it
_BIND_FAILED = re.compile(r"could not (bind|create listen socket)", re.IGNORECASE)


def server_bindir() -> Path | None:
    """Return the directory holding PostgreSQL's `initdb` and `postgres`, or None when not installed."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(os.path.realpath(on_path)).parent)  # postgres beside initdb: one version
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            bindir = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            candidates.append(Path(bindir))
    candidates += sorted(DEBIAN_ROOT.glob("*/bin"), key=_version, reverse=True)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in ("initdb", "postgres")):
            return directory
    return None


def _version(bindir: Path) -> tuple[int, ...]:
    """Order `/usr/lib/postgresql/<version>/bin` by version: 9.6 < 13 < 15."""
    try:
        return tuple(int(part) for part in bindir.parent.name.split("."))
    except ValueError:
        return (-1,)


class LocalPostgres(LocalBroker):
    """A PostgreSQL cluster in a temporary directory, served on loopback; see the module docstring."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_dir: str | os.PathLike[str] | None = None,
        ready_timeout_s: float = 30.0,
        stop_grace_s: float = 10.0,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._port = 0
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._ready_timeout_s = ready_timeout_s
        self._stop_grace_s = stop_grace_s
        self._settings = dict(settings or {})  # extra `-c name=value` server settings
        self._bindir: Path | None = None
        self._workdir: Path | None = None
        self._log_path: Path | None = None
        self._log_file: IO[bytes] | None = None
        self._run_as: pwd.struct_passwd | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._procs: list[subprocess.Popen[bytes]] = []  # every server started, for the finalizer
        self._finalizer: weakref.finalize[[list[subprocess.Popen[bytes]], Path], LocalPostgres] | None = None

    @property
    def port(self) -> int:
        """Return the server's TCP port on `host`."""
        if not self._port:
            raise RuntimeError("LocalPostgres has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Return the URL of the maintenance database `postgres` (make a test's own with create_database)."""
        return self.database_url("postgres")

    @property
    def log_path(self) -> Path:
        """Return the server's log file."""
        if self._log_path is None:
            raise RuntimeError("LocalPostgres has not been started")
        return self._log_path

    def database_url(self, name: str) -> str:
        """Return `postgresql://smartroute@HOST:PORT/NAME`, the URL of database `name` on this server."""
        return f"postgresql://{USER}@{self._host}:{self.port}/{quote(name, safe='')}"

    def create_database(self, name: str) -> str:
        """Create the empty database `name` and return its URL."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, ending the sessions still connected to it."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def start(self) -> None:
        """Create the cluster and start the server; return once it accepts connections, else raise."""
        if self._workdir is not None:
            raise RuntimeError("LocalPostgres is already running")
        bindir = server_bindir()
        if bindir is None:
            raise LocalPostgresError(NOT_INSTALLED)
        self._bindir = bindir
        self._run_as = _system_user() if os.geteuid() == 0 else None
        self._workdir = Path(tempfile.mkdtemp(prefix="smartroute-postgres-"))
        self._procs = []
        self._finalizer = weakref.finalize(self, _clean_up, self._procs, self._workdir)
        try:
            if self._run_as is not None:
                os.chown(self._workdir, self._run_as.pw_uid, self._run_as.pw_gid)
            log_dir = self._log_dir or self._workdir
            log_dir.mkdir(parents=True, exist_ok=True)
            self._log_path = log_dir / "postgres.log"
            self._log_file = self._log_path.open("ab")  # opened here: the server only inherits it
            self._initdb()
            self._start_on_a_free_port()
        except BaseException:
            self.stop()
            raise
        log.info("postgres_started", url=self.url, log=str(self._log_path))

    def _initdb(self) -> None:
        assert self._bindir is not None and self._workdir is not None
        command = [str(self._bindir / "initdb"), "-D", str(self._workdir / "data")]
        command += ["-A", "trust", "-U", USER, "-E", "UTF8", "--locale=C", "--no-sync"]
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
            **self._as_user(),
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode("utf-8", "replace")
            raise LocalPostgresError(f"initdb failed (exit code {result.returncode}):\n{output[-2000:]}")

    def _start_on_a_free_port(self) -> None:
        for attempt in range(1, _START_ATTEMPTS + 1):
            self._port = self._requested_port or free_port(self._host)
            self._spawn()
            if self._wait_ready():
                return
            bind_failed = _BIND_FAILED.search(tail(self.log_path, 5)) is not None
            if self._requested_port or not bind_failed or attempt == _START_ATTEMPTS:
                raise self._exited_at_start()
            log.warning("postgres_port_taken", port=self._port, attempt=attempt)

    def _spawn(self) -> None:
        assert self._bindir is not None and self._workdir is not None
        settings = {
            "listen_addresses": self._host,
            "port": str(self._port),
            "unix_socket_directories": str(self._workdir),
            "fsync": "on",
            "synchronous_commit": "on",
            **self._settings,
        }
        command = [str(self._bindir / "postgres"), "-D", str(self._workdir / "data")]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the backends are stopped with it
            **self._as_user(),
        )
        self._procs.append(self._proc)

    def _as_user(self) -> _UserArgs:
        """Return Popen's arguments running a server binary as the `postgres` user when we are root."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
        if self._run_as is None:
            return {"env": env, "cwd": self._workdir, "user": None, "group": None, "extra_groups": None}
        env |= {"HOME": self._run_as.pw_dir, "USER": _SYSTEM_USER, "LOGNAME": _SYSTEM_USER}
        return {
            "env": env,
            "cwd": self._workdir,
            "user": self._run_as.pw_uid,
            "group": self._run_as.pw_gid,
            "extra_groups": [],
        }

    def _wait_ready(self) -> bool:
        """Return True once the server accepts a connection, False if it exited; raise on timeout."""
        assert self._proc is not None
        deadline = time.monotonic() + self._ready_timeout_s
        last_error = "no attempt made"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return True
            except psycopg.OperationalError as exc:
                last_error = str(exc).strip()
            time.sleep(_PROBE_INTERVAL_S)  # waiting on another process: there is no clock to inject
        raise LocalPostgresError(
            f"PostgreSQL did not accept connections on {self._host}:{self._port} within "
            f"{self._ready_timeout_s} s (last: {last_error}); log {self._log_path}:\n{tail(self.log_path)}"
        )

    def _exited_at_start(self) -> LocalPostgresError:
        assert self._proc is not None
        return LocalPostgresError(
            f"PostgreSQL exited at start (exit code {self._proc.returncode}); "
            f"log {self._log_path}:\n{tail(self.log_path)}"
        )

    def kill(self) -> None:
        """SIGKILL the server and every backend, as a crash would; restart() recovers from its WAL."""
        if self._proc is not None:
            _kill_group(self._proc)
            self._proc = None

    def restart(self) -> None:
        """Stop the server (fast shutdown) if it runs; start it again on its port and data, and wait."""
        if self._workdir is None:
            raise RuntimeError("LocalPostgres has not been started")
        self._stop_server()
        self._spawn()
        if not self._wait_ready():
            raise self._exited_at_start()
        log.info("postgres_restarted", port=self._port)

    def stop(self) -> None:
        """Stop the server (SIGINT, then SIGKILL after the grace period) and remove its data directory."""
        self._stop_server()
        if self._finalizer is not None:
            self._finalizer()  # kills whatever is left and removes the directory, once
            self._finalizer = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._workdir is not None:
            log.info("postgres_stopped", port=self._port)
        self._workdir = None
        self._port = 0

    def _stop_server(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(self._stop_grace_s)
        except subprocess.TimeoutExpired:
            log.warning("postgres_stop_timeout", pid=proc.pid, grace_s=self._stop_grace_s)
            _kill_group(proc)


class _UserArgs(TypedDict):
    """Keyword arguments of subprocess.Popen choosing the user, environment and directory of a child."""

    env: dict[str, str]
    cwd: Path | None
    user: int | None
    group: int | None
    extra_groups: list[int] | None


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        raise LocalPostgresError(
            "PostgreSQL refuses to run as root, and there is no `postgres` user to run it as: "
            "apt-get install -y postgresql creates it (or run the tests as another user)"
        ) from None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server's process group (the postmaster and its backends) and reap the postmaster."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group id is its pid
        proc.wait()


def _clean_up(procs: list[subprocess.Popen[bytes]], workdir: Path) -> None:
    """Kill every server still running and remove the cluster (stop(), or the finalizer at exit)."""
    for proc in procs:
        _kill_group(proc)
    shutil.rmtree(workdir, ignore_errors=True)
