"""GroupWriter: the ledger's hot-path writes, grouped into one durable transaction per batch.

One thread owns its own connection to the ledger's store (an SQLite file in
WAL mode with synchronous=FULL, or PostgreSQL). `submit` puts an operation — a function of that connection —
on the thread's queue and returns an awaitable future. The thread takes
everything queued, runs it in ONE transaction (each operation under its own
savepoint), commits — one fsync for the whole batch — and only then resolves
the futures, all of them in one wake-up of the callers' event loop. While it
commits, new operations queue up and form the next batch.

An operation that raises LedgerError (a refusal: "leg recorded with different
fields") is rolled back to its savepoint and fails its own future only; the
rest of the batch commits. A transaction the store calls retryable (a
PostgreSQL deadlock with another router's batch: rolled back whole) runs
again, a few times. Any other failure — the database's (disk full, I/O error,
a lost connection, a failed commit) or a bug — rolls the whole transaction back
and fails every future of the batch with LedgerError; the next batch opens a
new connection if this one broke. A caller that got its result knows its write
is durable. One that got an error knows nothing of its write is — except when
the connection broke during COMMIT itself, which no database can tell: the
callers then treat the request as in flight (`router.smart`), settled from the
ledger and the venue, never executed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from router.errors import LedgerError
from router.ledger.store import Connection, Store, reconnected, rolled_back

T = TypeVar("T")

Operation = Callable[[Connection], Any]
_ATTEMPTS = 5  # runs of a batch whose transaction the store calls retryable


@dataclass(frozen=True, slots=True)
class _Queued:
    action: str
    operation: Operation
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class GroupWriter:
    """Run submitted write operations on one thread, a batch per durable transaction."""

    def __init__(self, store: Store) -> None:
        """Start the writer thread on the (already migrated) ledger in `store`."""
        self.store = store
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

    async def submit(self, action: str, operation: Callable[[Connection], T]) -> T:
        """Run `operation` in the next batch; return its value once that batch is on disk."""
        if self._closed:
            raise LedgerError(f"ledger {self.store.name}: {action}: the ledger is closed")
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

    def _connect(self) -> Connection | None:
        try:
            return self.store.connect()
        except LedgerError as exc:
            self._open_error = LedgerError(f"{exc} (the group writer)")
            return None
        finally:
            self._opened.set()

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
                    conn = self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: Connection, batch: list[_Queued]) -> Connection:
        """Run `batch` in one transaction and resolve its futures; all fail if the transaction does.

        Return the connection the next batch uses: a new one if this one broke.
        """
        for attempt in range(1, _ATTEMPTS + 1):
            outcomes: list[tuple[bool, Any]] = []
            try:
                conn.execute(self.store.begin)
                for item in batch:
                    outcomes.append(_run_one(conn, item))
                conn.execute("COMMIT")
            except BaseException as exc:  # every other failure fails the whole batch: nothing is applied
                broken = not rolled_back(conn, self.store)
                if not broken and attempt < _ATTEMPTS and self.store.retryable(exc):
                    continue
                error = LedgerError(
                    f"ledger {self.store.name}: batch of {len(batch)} write(s) not committed: {exc!r}"
                )
                _resolve([(item, False, error) for item in batch])
                return reconnected(conn, self.store) if broken else conn
            self.commits += 1
            self.operations += len(batch)
            _resolve([(item, ok, value) for item, (ok, value) in zip(batch, outcomes, strict=True)])
            return conn
        raise AssertionError("unreachable: the last attempt returns")


def _run_one(conn: Connection, item: _Queued) -> tuple[bool, Any]:
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
