"""Recordings of raw WebSocket frames: what `smartroute record` writes and `smartroute replay` reads.

A recording is one gzip stream of JSON lines. The first line is the header::

    {"format": "smartroute-recording", "version": 1, "venues": ["binance", "bybit"],
     "symbols": {"binance": ["BTC-USDT"], "bybit": ["BTC-USDT"]}, "created_ns": 1764000000000000000}

and every further line one record, in the order the frames were received::

    {"kind": "connect", "venue": "bybit", "received_ns": 1764000000000100000}
    {"kind": "frame", "venue": "bybit", "received_ns": 1764000000000200000, "frame": "{\\"topic\\": ...}"}
    {"kind": "frame", "venue": "okx", "received_ns": 1764000000000300000, "frame_b64": "eJzT..."}

A `connect` record marks a new connection of the venue: its parser starts
afresh from there, as the live runner's does. Text frames are stored as text
(`frame`), binary frames base64-encoded (`frame_b64`). Reading a file that is
truncated, corrupt or not a recording raises `RecordingError`, naming the file
and the offset (in the uncompressed stream) of the line it could not read;
every record before that one has been delivered.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import os
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal, Self

import orjson

from connectors.errors import SmartrouteError

FORMAT: Final = "smartroute-recording"
VERSION: Final = 1
RecordKind = Literal["frame", "connect"]
_ErrorFactory = Callable[[str], "RecordingError"]
_KINDS: Final = frozenset({"frame", "connect"})
# Fast enough to keep up with every venue at once; level 9 buys ~10 % of size for 3x the CPU.
_COMPRESS_LEVEL: Final = 5


class RecordingError(SmartrouteError):
    """A recording that cannot be read: truncated, corrupt, or not a smartroute recording."""

    def __init__(self, path: str | os.PathLike[str], offset: int, problem: str) -> None:
        """Name the file, the uncompressed byte offset of the unreadable line, and what is wrong."""
        super().__init__(f"{os.fspath(path)}: at offset {offset}: {problem}")
        self.path = os.fspath(path)
        self.offset = offset
        self.problem = problem


@dataclass(frozen=True, slots=True)
class RecordingHeader:
    """What a recording holds: venues, each venue's canonical symbols, when it was made."""

    venues: tuple[str, ...]
    symbols: Mapping[str, tuple[str, ...]]
    created_ns: int
    format: str = FORMAT
    version: int = VERSION

    def as_message(self) -> dict[str, object]:
        """Return the header line's JSON object."""
        return {
            "format": self.format,
            "version": self.version,
            "venues": list(self.venues),
            "symbols": {venue: list(self.symbols[venue]) for venue in self.venues},
            "created_ns": self.created_ns,
        }


@dataclass(frozen=True, slots=True)
class Record:
    """One recorded event of one venue: a frame as received, or the opening of a new connection."""

    kind: RecordKind
    venue: str
    received_ns: int
    frame: str | bytes | None = None


class RecordingWriter:
    """Append frames to a new recording; `close()` (or leaving the `with` block) completes the file.

    Not thread-safe: it lives on the event loop that receives the frames. `flush()`
    pushes what is buffered to the OS, so that a crash loses at most what came after.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        symbols: Mapping[str, Sequence[str]],
        *,
        created_ns: int | None = None,
    ) -> None:
        """Create `path` (never overwriting a file) for the venues and symbols in `symbols`."""
        if not symbols:
            raise ValueError("a recording needs at least one venue")
        self.path = Path(path)
        self.header = RecordingHeader(
            venues=tuple(symbols),
            symbols={venue: tuple(venue_symbols) for venue, venue_symbols in symbols.items()},
            created_ns=time.time_ns() if created_ns is None else created_ns,
        )
        try:
            self._file: IO[bytes] = open(self.path, "xb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise RecordingError(self.path, 0, f"cannot create the recording: {exc}") from exc
        self._gzip: gzip.GzipFile | None = gzip.GzipFile(
            filename="", mode="wb", fileobj=self._file, compresslevel=_COMPRESS_LEVEL, mtime=0
        )
        self.records = 0  # after the header
        self._write(self.header.as_message())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def write_frame(self, venue: str, frame: str | bytes, received_ns: int) -> None:
        """Append one frame of `venue` as it was received."""
        self._check(venue)
        if isinstance(frame, str):
            self._write({"kind": "frame", "venue": venue, "received_ns": received_ns, "frame": frame})
        else:
            encoded = base64.b64encode(frame).decode("ascii")
            self._write({"kind": "frame", "venue": venue, "received_ns": received_ns, "frame_b64": encoded})
        self.records += 1

    def write_connect(self, venue: str, received_ns: int) -> None:
        """Mark that `venue` opened a new connection: replay restarts its parser here."""
        self._check(venue)
        self._write({"kind": "connect", "venue": venue, "received_ns": received_ns})
        self.records += 1

    def flush(self) -> None:
        """Hand everything written so far to the OS (a gzip sync flush)."""
        if self._gzip is not None:
            self._gzip.flush(zlib.Z_SYNC_FLUSH)
            self._file.flush()

    def close(self) -> None:
        """Complete the gzip stream and close the file; idempotent."""
        if self._gzip is None:
            return
        gz, self._gzip = self._gzip, None
        try:
            gz.close()
        finally:
            self._file.close()

    def _check(self, venue: str) -> None:
        if self._gzip is None:
            raise ValueError(f"{self.path}: the recording is closed")
        if venue not in self.header.symbols:
            raise ValueError(
                f"{self.path}: venue {venue!r} is not in the recording ({list(self.header.venues)})"
            )

    def _write(self, message: dict[str, object]) -> None:
        assert self._gzip is not None
        self._gzip.write(orjson.dumps(message) + b"\n")


class RecordingReader:
    """Read a recording: `header` at once, then the records by iterating, in order."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open `path` and read its header; raise RecordingError if it is not a readable recording."""
        self.path = Path(path)
        try:
            self._gzip = gzip.open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise RecordingError(self.path, 0, f"cannot open: {exc}") from exc
        self._offset = 0  # of the line being read, in the uncompressed stream
        self._next_offset = 0
        self._line_number = 0
        try:
            self.header = _header(self._next_object() or {}, self._error)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Record]:
        """Yield every record after the header; raise RecordingError at the first unreadable one."""
        while (message := self._next_object()) is not None:
            yield _record(message, self.header, self._error)

    def close(self) -> None:
        """Close the file; idempotent."""
        self._gzip.close()

    def _error(self, problem: str) -> RecordingError:
        return RecordingError(self.path, self._offset, f"line {self._line_number}: {problem}")

    def _next_object(self) -> dict[str, Any] | None:
        """Return the next line's JSON object, None at a clean end of the stream."""
        self._offset = self._next_offset
        self._line_number += 1
        try:
            line = self._gzip.readline()
        except (EOFError, OSError, zlib.error) as exc:
            raise self._error(f"truncated or corrupt compressed data ({exc})") from exc
        self._next_offset += len(line)
        if not line:
            if self._line_number == 1:
                raise self._error("empty file: no header")
            return None
        if not line.endswith(b"\n"):
            raise self._error("truncated record (no end of line)")
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise self._error(f"not JSON ({exc})") from exc
        if not isinstance(message, dict):
            raise self._error("not a JSON object")
        return message


def _header(message: dict[str, Any], error: _ErrorFactory) -> RecordingHeader:
    if message.get("format") != FORMAT:
        raise error(f"not a smartroute recording (format {message.get('format')!r})")
    if message.get("version") != VERSION:
        raise error(f"unsupported recording version {message.get('version')!r} (this reads {VERSION})")
    venues, symbols, created_ns = message.get("venues"), message.get("symbols"), message.get("created_ns")
    if not isinstance(venues, list) or not venues or not all(isinstance(v, str) for v in venues):
        raise error("header: 'venues' must be a non-empty list of venue ids")
    if not isinstance(symbols, dict) or set(symbols) != set(venues):
        raise error("header: 'symbols' must map every venue to its symbols")
    for venue, venue_symbols in symbols.items():
        if not isinstance(venue_symbols, list) or not all(isinstance(s, str) for s in venue_symbols):
            raise error(f"header: symbols of {venue!r} must be a list of strings")
    if not isinstance(created_ns, int) or isinstance(created_ns, bool):
        raise error("header: 'created_ns' must be an integer")
    return RecordingHeader(
        venues=tuple(venues),
        symbols={venue: tuple(symbols[venue]) for venue in venues},
        created_ns=created_ns,
    )


def _record(message: dict[str, Any], header: RecordingHeader, error: _ErrorFactory) -> Record:
    kind, venue, received_ns = message.get("kind"), message.get("venue"), message.get("received_ns")
    if kind not in _KINDS:
        raise error(f"unknown record kind {kind!r}")
    if not isinstance(venue, str) or venue not in header.symbols:
        raise error(f"record of venue {venue!r}, which the header does not list")
    if not isinstance(received_ns, int) or isinstance(received_ns, bool):
        raise error("'received_ns' must be an integer")
    if kind == "connect":
        return Record("connect", venue, received_ns)
    text, encoded = message.get("frame"), message.get("frame_b64")
    if isinstance(text, str) and encoded is None:
        return Record("frame", venue, received_ns, text)
    if isinstance(encoded, str) and text is None:
        try:
            return Record("frame", venue, received_ns, base64.b64decode(encoded, validate=True))
        except binascii.Error as exc:
            raise error(f"'frame_b64' is not base64 ({exc})") from exc
    raise error("a frame record needs exactly one of 'frame' (text) or 'frame_b64' (binary)")
