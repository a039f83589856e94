"""sd_notify without libsystemd: tell systemd when smartroute is ready, alive and stopping.

systemd gives a `Type=notify` service `$NOTIFY_SOCKET`, an AF_UNIX datagram socket (a leading
`@` names an abstract one), and with `WatchdogSec=` also `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
Without `$NOTIFY_SOCKET` every call here does nothing, so the same code runs under systemd, in
a terminal and in tests.

    notifier = Notifier.from_environ()
    tg.create_task(notifier.watchdog_loop(), name="systemd-watchdog")
    ...start-up work...
    notifier.ready()
    ...
    notifier.stopping()

The watchdog rule: `WATCHDOG=1` goes out every `WATCHDOG_USEC / 2`, sent by a coroutine on the
daemon's own event loop, and only while that loop is healthy. Health is measured by a probe:
the loop sleeps a short `probe_interval_s` again and again, and a sleep that wakes more than
`max_lag_s` late means the loop is starved. A ping that falls due after a late wake-up is
withheld until a probe wakes on time again. So a blocked loop sends nothing (nothing runs), a
starved loop sends nothing (every probe is late), and a loop that stalled once pings again as
soon as it recovers; if that takes longer than `WATCHDOG_USEC`, systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import structlog

from connectors.errors import SmartrouteError

log = structlog.get_logger(__name__)

_MAX_PROBE_INTERVAL_S: Final = 1.0
_PROBES_PER_PING: Final = 10
_LAG_SHARE_OF_INTERVAL: Final = 0.25  # a loop late by a quarter of the ping interval is not healthy


class SystemdError(SmartrouteError):
    """The environment systemd passed ($NOTIFY_SOCKET, $WATCHDOG_USEC, $WATCHDOG_PID) cannot be used."""


def _socket_address(value: str) -> str:
    """Return the socket address for `$NOTIFY_SOCKET`; abstract names start with NUL."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    raise SystemdError(
        f"NOTIFY_SOCKET={value!r} is neither an absolute path nor an abstract '@name' socket "
        "(vsock addresses are not supported)"
    )


def _watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """Return half of `$WATCHDOG_USEC` in seconds, or None when no watchdog is set for `pid`."""
    usec_text = environ.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = environ.get("WATCHDOG_PID")
    if pid_text:
        if not (pid_text.isascii() and pid_text.isdigit()):
            raise SystemdError(f"WATCHDOG_PID={pid_text!r} is not a process id")
        if int(pid_text) != pid:
            return None  # the watchdog belongs to another process (e.g. our parent)
    if not (usec_text.isascii() and usec_text.isdigit()) or int(usec_text) == 0:
        raise SystemdError(f"WATCHDOG_USEC={usec_text!r} is not a positive number of microseconds")
    return int(usec_text) / 2 / 1_000_000


def _watchdog_timing(
    interval_s: float, probe_interval_s: float | None, max_lag_s: float | None
) -> tuple[float, float]:
    """Return (probe interval, lag bound) in seconds for a ping interval; explicit values must be > 0."""
    for name, value in (("probe_interval_s", probe_interval_s), ("max_lag_s", max_lag_s)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
    if probe_interval_s is None:
        probe_interval_s = min(interval_s / _PROBES_PER_PING, _MAX_PROBE_INTERVAL_S)
    if max_lag_s is None:
        max_lag_s = interval_s * _LAG_SHARE_OF_INTERVAL
    return probe_interval_s, max_lag_s


def _clean(text: str) -> str:
    # A newline would end the assignment and start a new (forged) one.
    return " ".join(text.split())


class Notifier:
    """Send sd_notify messages to systemd; a no-op when `address` is None."""

    def __init__(self, address: str | None, *, watchdog_interval_s: float | None = None) -> None:
        """Prepare to notify `address` (a path, or NUL + abstract name); ping every `watchdog_interval_s`."""
        if watchdog_interval_s is not None and not watchdog_interval_s > 0:
            raise ValueError(f"watchdog_interval_s must be positive, got {watchdog_interval_s!r}")
        self._address = address
        self._watchdog_interval_s = watchdog_interval_s if address is not None else None
        self._socket: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, pid: int | None = None) -> Notifier:
        """Build a Notifier from systemd's variables; raise SystemdError if they are malformed."""
        env = os.environ if environ is None else environ
        value = env.get("NOTIFY_SOCKET")
        if not value:
            return cls(None)
        own_pid = os.getpid() if pid is None else pid
        return cls(_socket_address(value), watchdog_interval_s=_watchdog_interval_s(env, own_pid))

    @property
    def enabled(self) -> bool:
        """Return whether a notification socket is configured."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Return the seconds between watchdog pings, None when systemd asked for none."""
        return self._watchdog_interval_s

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram; return whether systemd's socket took it.

        A failed send is logged, not raised: systemd notices a missing READY or watchdog
        ping by itself, and acts on it.
        """
        if self._address is None:
            return False
        for assignment in assignments:
            key, sep, _ = assignment.partition("=")
            if not sep or not key or "\n" in assignment:
                raise ValueError(f"not a single KEY=value assignment: {assignment!r}")
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify_failed", error=repr(exc), message=assignments[0].partition("=")[0])
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up is complete (READY=1), with an optional status line."""
        extra = () if status is None else (f"STATUS={_clean(status)}",)
        return self.notify("READY=1", *extra)

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd shutdown has begun (STOPPING=1), with an optional status line."""
        extra = () if status is None else (f"STATUS={_clean(status)}",)
        return self.notify("STOPPING=1", *extra)

    def status(self, text: str) -> bool:
        """Set the one-line status `systemctl status` shows."""
        return self.notify(f"STATUS={_clean(text)}")

    def watchdog(self) -> bool:
        """Send one watchdog keep-alive (WATCHDOG=1)."""
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the notification socket; idempotent. A later notification opens it again."""
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    async def watchdog_loop(
        self,
        *,
        probe_interval_s: float | None = None,
        max_lag_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Ping the watchdog while the event loop is healthy, until cancelled (see the module doc).

        Returns at once when systemd set no watchdog. Defaults: probes every tenth of the ping
        interval (at most 1 s); a probe more than a quarter of the ping interval late is unhealthy.
        """
        interval_s = self._watchdog_interval_s
        if interval_s is None:
            return
        probe_s, lag_bound_s = _watchdog_timing(interval_s, probe_interval_s, max_lag_s)
        log.info("watchdog_started", ping_interval_s=interval_s, probe_s=probe_s, max_lag_s=lag_bound_s)
        next_ping = clock()
        lag_s = 0.0
        withheld = False
        while True:
            now = clock()
            if now >= next_ping:
                if lag_s <= lag_bound_s:
                    self.watchdog()
                    next_ping = now + interval_s
                    withheld = False
                elif not withheld:
                    withheld = True  # one log line per unhealthy spell, not one per probe
                    log.warning("watchdog_ping_withheld", loop_lag_s=round(lag_s, 3), max_lag_s=lag_bound_s)
            before = clock()
            await sleep(probe_s)
            lag_s = clock() - before - probe_s
