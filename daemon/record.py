"""`smartroute record` and `smartroute replay`: raw frames to a file, and that file back through the detector.

`record` runs one StreamRunner per venue, as `smartroute run` does, and taps
every raw frame with its receive time into a `connectors.recording` file; a
venue's new connection is marked before its first frame. It stops on
`stop` (SIGINT/SIGTERM) or after `duration_s`, then flushes and closes the
file. Buffered data is flushed every second, so a crash loses at most that.

`replay_file` replays a recording with the config's detector, cache and fee
settings (`router.replay`) and writes the events, all or nothing: the output
appears only once the whole recording was replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

from connectors.recording import RecordingReader, RecordingWriter
from connectors.registry import build_adapter
from connectors.stream import StreamRunner
from connectors.types import Quote
from daemon.config import CacheConfig, DetectorConfig, VenueConfig
from daemon.errors import ConfigError
from router.replay import ReplaySettings, ReplayStats, replay

log = structlog.get_logger(__name__)

_FLUSH_INTERVAL_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class RecordSummary:
    """What a recording session wrote."""

    path: Path
    records: int
    frames: dict[str, int]
    connects: dict[str, int]
    duration_s: float


class _FrameTap:
    """Write one venue's frames to the recording, marking each new connection before its first frame."""

    def __init__(self, writer: RecordingWriter, venue: str) -> None:
        self.writer = writer
        self.venue = venue
        self.runner: StreamRunner | None = None
        self.frames = 0
        self.connects = 0

    def __call__(self, frame: str | bytes, received_ns: int) -> None:
        assert self.runner is not None
        if self.runner.connects != self.connects:
            self.connects = self.runner.connects
            self.writer.write_connect(self.venue, received_ns)
        self.writer.write_frame(self.venue, frame, received_ns)
        self.frames += 1


def _ignore_quote(quote: Quote) -> None:
    """Quotes are parsed (the runner needs them to judge a connection healthy) but not kept."""


def recorded_venues(
    configured: Mapping[str, VenueConfig], venues: Sequence[str] | None
) -> dict[str, VenueConfig]:
    """Return the venues to record: those named (each must be enabled), else every enabled venue."""
    enabled = {venue: vc for venue, vc in configured.items() if vc.enabled}
    if venues is None:
        chosen = dict(enabled)
    else:
        unknown = [venue for venue in venues if venue not in enabled]
        if unknown:
            raise ConfigError(f"cannot record {unknown}: not enabled venues (enabled: {sorted(enabled)})")
        chosen = {venue: enabled[venue] for venue in venues}
    if not chosen:
        raise ConfigError("venues: no venue is enabled to record; add a [venues.<id>] section")
    return chosen


async def record(
    configured: Mapping[str, VenueConfig],
    path: Path,
    stop: asyncio.Event,
    *,
    duration_s: float | None = None,
    venues: Sequence[str] | None = None,
) -> RecordSummary:
    """Record the venues' raw frames into a new file at `path` until `stop` is set or `duration_s` passes.

    `configured` is the `[venues]` section; `venues` names those to record (default: every enabled one).
    """
    chosen = recorded_venues(configured, venues)
    started = time.monotonic()
    with RecordingWriter(path, {venue: vc.symbols for venue, vc in chosen.items()}) as writer:
        taps = {venue: _FrameTap(writer, venue) for venue in chosen}
        runners = {
            venue: StreamRunner(
                build_adapter(venue, vc.symbols, ws_url=vc.ws_url),
                _ignore_quote,
                silence_timeout_s=vc.silence_timeout_ms / 1000,
                on_frame=taps[venue],
            )
            for venue, vc in chosen.items()
        }
        for venue, runner in runners.items():
            taps[venue].runner = runner
        log.info("recording_started", path=str(path), venues=sorted(chosen))
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(r.run(), name=f"record:{venue}") for venue, r in runners.items()]
            tasks.append(group.create_task(_flush_every(writer, _FLUSH_INTERVAL_S), name="record:flush"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
            for task in tasks:
                task.cancel()
    summary = RecordSummary(
        path=path,
        records=writer.records,
        frames={venue: tap.frames for venue, tap in taps.items()},
        connects={venue: tap.connects for venue, tap in taps.items()},
        duration_s=round(time.monotonic() - started, 3),
    )
    log.info("recording_stopped", path=str(path), records=summary.records, frames=summary.frames)
    return summary


async def _flush_every(writer: RecordingWriter, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        writer.flush()


def replay_settings(
    detector: DetectorConfig, cache: CacheConfig, venues: Mapping[str, VenueConfig]
) -> ReplaySettings:
    """Return the replay settings of a config: its detector and cache settings, every venue's taker fee."""
    return ReplaySettings(
        taker_fee_bps={venue: vc.taker_fee_bps for venue, vc in venues.items()},
        min_net_profit_bps=detector.min_net_profit_bps,
        max_notional=detector.max_notional,
        update_min_change_bps=detector.update_min_change_bps,
        ttl_ms=cache.ttl_ms,
        max_quote_age_ms=cache.max_quote_age_ms,
        sweep_interval_ms=detector.sweep_interval_ms,
    )


def replay_file(settings: ReplaySettings, recording: Path, out: Path | None) -> ReplayStats:
    """Replay `recording` and write its events to `out` (stdout when None); the file appears only whole."""
    with RecordingReader(recording) as reader:
        if out is None:
            return replay(reader.header, reader, sys.stdout.buffer, settings)
        descriptor, partial = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
        try:
            with os.fdopen(descriptor, "wb") as events:
                stats = replay(reader.header, reader, events, settings)
            os.replace(partial, out)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
    return stats
