"""GroupWriter: the ledger's hot-path writes, grouped into one durable transaction per batch.

One thread owns its own SQLite connection to the ledger file (WAL,
synchronous=FULL). `submit` puts an operation — a function of that connection —
on the thread's queue and returns an awaitable future. The thread takes
everything queued, runs it in ONE transaction (each operation under its own
savepoint), commits — one fsync for the whole batch — and only then resolves
the futures, all of them in one wake-up of the callers' event loop. While it
commits, new operations queue up and form the next batch.

An operation that raises LedgerError (a refusal: "leg recorded with different
fields") is rolled back to its savepoint and fails its own future only; the
rest of the batch commits. Any other failure — SQLite's (disk full, I/O error,
a failed commit) or a bug — rolls the whole transaction back and fails every
future of the batch with LedgerError: nothing of it is applied. So a caller
that got its result knows its write is on disk, and one that got an error
knows nothing of its write is.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from router.errors import LedgerError
from router.ledger.schema import BUSY_TIMEOUT_MS

T = TypeVar("T")

Operation = Callable[[sqlite3.Connection], Any]


@dataclass(frozen=True, slots=True)
class _Queued:
    action: str
    operation: Operation
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class GroupWriter:
    """Run submitted write operations on one thread, a batch per durable transaction."""

    def __init__(self, path: Path) -> None:
        """Start the writer thread on the (already migrated) ledger file at `path`."""
        self.path = path
        self.commits = 0  # durable transactions committed (each one fsync)
        self.operations = 0  # operations those transactions held
        self._queue: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self._opened = threading.Event()
        self._open_error: LedgerError | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._open_error is not None:
            self._thread.join()
            raise self._open_error

    async def submit(self, action: str, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run `operation` in the next batch; return its value once that batch is on disk."""
        if self._closed:
            raise LedgerError(f"ledger {self.path}: {action}: the ledger is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Queued(action, operation, loop, future))
        return await future

    def close(self) -> None:
        """Commit what is queued, then stop the thread; closing again is a no-op."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _connect(self) -> sqlite3.Connection | None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            self._open_error = LedgerError(f"ledger {self.path}: cannot open the writer: {exc}")
            return None
        finally:
            self._opened.set()
        return conn

    def _run(self) -> None:
        conn = self._connect()
        if conn is None:
            return
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                batch = [] if first is None else [first]
                stopping = first is None
                while not stopping:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                    else:
                        batch.append(item)
                if batch:
                    self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Queued]) -> None:
        """Run `batch` in one transaction and resolve its futures; all fail if the transaction does."""
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                outcomes.append(_run_one(conn, item))
            conn.execute("COMMIT")
        except BaseException as exc:  # every other failure fails the whole batch: nothing is applied
            if conn.in_transaction:
                conn.rollback()
            error = LedgerError(f"ledger {self.path}: batch of {len(batch)} write(s) not committed: {exc!r}")
            _resolve([(item, False, error) for item in batch])
            return
        self.commits += 1
        self.operations += len(batch)
        _resolve([(item, ok, value) for item, (ok, value) in zip(batch, outcomes, strict=True)])


def _run_one(conn: sqlite3.Connection, item: _Queued) -> tuple[bool, Any]:
    """Run one operation under a savepoint: a refusal (LedgerError) undoes only this operation."""
    conn.execute("SAVEPOINT operation")
    try:
        value = item.operation(conn)
    except LedgerError as exc:
        conn.execute("ROLLBACK TO operation")
        conn.execute("RELEASE operation")
        return False, exc
    conn.execute("RELEASE operation")
    return True, value


def _resolve(settled: list[tuple[_Queued, bool, Any]]) -> None:
    """Hand each caller its outcome on its event loop: one wake-up of each loop per batch, not per write."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Queued, bool, Any]]] = {}
    for entry in settled:
        by_loop.setdefault(entry[0].loop, []).append(entry)
    for loop, entries in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the callers' event loop is closed: nobody awaits these
            loop.call_soon_threadsafe(_settle, entries)


def _settle(entries: list[tuple[_Queued, bool, Any]]) -> None:
    for item, ok, value in entries:
        if item.future.done():  # its caller was cancelled: the write stands (a crash would leave it too)
            continue
        if ok:
            item.future.set_result(value)
        else:
            item.future.set_exception(value)
