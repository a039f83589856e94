"""Scenario 8, parser fuzzing: every venue's market-data parsers fed mutated and random frames.

For each venue of the registry, both parsers the `StreamRunner` uses (`new_parser()` of its
adapter streaming the best bid and offer, and with a 10-level book) get Hypothesis examples.
Each example starts a fresh parser (one per connection, as the runner does), feeds it every
documented frame of the venue unchanged (`tests/connectors/frames/<venue>/`, and
`/work/shared/exchange-samples/<venue>-*` when present: so books exist to be updated), then one
to three frames under test: a documented frame mutated (`faults.mutations.mutated`) or a
random one. A parser waiting for a REST snapshot (`SnapshotParser`) is then given a mutated
snapshot body. Examples run in seeded batches until the venue's time budget is spent
(`--budget`, seconds per venue: 600 in full, split between its two parsers; 0.6 small).

Figures: exceptions other than those the parser documents (`ParseError`, its `BookInvalid`,
`ReconnectRequested`) (0); the slowest single parse of a frame under test (< 100 ms); inputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from connectors.base import Parser, SnapshotParser
from connectors.errors import ParseError, ReconnectRequested
from connectors.registry import VENUES, build_adapter
from faults.mutations import mutated, random_frame
from faults.scenario import Context, Figure, Outcome, Scenario, below, measured, zero

REPO: Final = Path(__file__).resolve().parents[1]
FRAMES: Final = REPO / "tests" / "connectors" / "frames"
SHARED_SAMPLES: Final = Path("/work/shared/exchange-samples")
SYMBOLS: Final = ("BTC-USDT", "ETH-USDT", "BTC-USD", "ETH-USD", "BNB-USDT", "ALGO-USD", "MATIC-USD")
DEPTHS: Final = (None, 10)  # best bid and offer; a 10-level book
DOCUMENTED: Final = (ParseError, ReconnectRequested)  # BookInvalid is a ParseError
FULL_BUDGET_S: Final = 600.0
SMALL_BUDGET_S: Final = 0.6
_BATCH: Final = 50
_SAMPLE_CHARS: Final = 300


def documented_frames(venue: str) -> list[bytes]:
    """The venue's documented frames: each .json file whole, each line of each .jsonl file."""
    files = [
        p
        for p in sorted((FRAMES / venue).glob("*.json*"))
        if p.name not in ("contract.json", "test-vectors.json")
    ]
    if SHARED_SAMPLES.is_dir():
        files += sorted(SHARED_SAMPLES.glob(f"{venue}-*.json*"))
    frames: list[bytes] = []
    for path in files:
        data = path.read_bytes()
        frames += [line for line in data.splitlines() if line.strip()] if path.suffix == ".jsonl" else [data]
    return frames


@dataclass(slots=True)
class Findings:
    """What one parser's fuzzing found."""

    inputs: int = 0
    documented_errors: int = 0
    slowest_ms: float = 0.0
    slowest_input: str = ""
    unexpected: dict[str, dict[str, Any]] = field(default_factory=dict)

    def feed(self, call: Callable[[], object], frame: bytes | str, *, timed: bool) -> None:
        """Run one parser call on `frame`: time it, sort what it raised."""
        started = time.perf_counter_ns()
        try:
            call()
        except DOCUMENTED:
            self.documented_errors += 1
        except Exception as exc:  # every other exception is what this scenario counts
            where = exc.__traceback__
            while where is not None and where.tb_next is not None:
                where = where.tb_next
            line = f"{where.tb_frame.f_code.co_filename}:{where.tb_lineno}" if where is not None else "?"
            key = f"{type(exc).__name__} at {Path(line).name if line != '?' else line}"
            seen = self.unexpected.setdefault(
                key, {"count": 0, "error": repr(exc)[:_SAMPLE_CHARS], "frame": _sample(frame), "where": line}
            )
            seen["count"] += 1
        elapsed_ms = (time.perf_counter_ns() - started) / 1e6
        if timed:
            self.inputs += 1
            if elapsed_ms > self.slowest_ms:
                self.slowest_ms, self.slowest_input = elapsed_ms, _sample(frame)


def _sample(frame: bytes | str) -> str:
    text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
    return text[:_SAMPLE_CHARS]


def fuzz_parser(venue: str, depth: int | None, budget_s: float, base_seed: int) -> Findings:
    """Fuzz one parser for `budget_s` seconds, in seeded batches of examples."""
    documented = documented_frames(venue)
    adapter = build_adapter(venue, SYMBOLS, depth=depth)
    findings = Findings()
    under_test = st.one_of(st.sampled_from(documented).flatmap(mutated), random_frame())

    @settings(
        max_examples=_BATCH,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        frames=st.lists(under_test, min_size=1, max_size=3),
        snapshot=st.sampled_from(documented).flatmap(mutated),
    )
    def example(frames: list[bytes | str], snapshot: bytes) -> None:
        parser: Parser = adapter.new_parser()
        received_ns = time.time_ns()
        for frame in documented:
            findings.feed(partial(parser.parse, frame, received_ns), frame, timed=False)
        for fuzzed in frames:
            findings.feed(partial(parser.parse, fuzzed, received_ns), fuzzed, timed=True)
        if isinstance(parser, SnapshotParser):
            for symbol in parser.snapshot_requests():
                findings.feed(
                    partial(parser.load_snapshot, symbol, snapshot, received_ns), snapshot, timed=True
                )

    deadline = time.monotonic() + budget_s
    batch = 0
    while time.monotonic() < deadline:
        seed(base_seed * 1_000_003 + batch)(example)()
        batch += 1
    return findings


async def run_scenario(context: Context) -> Outcome:
    """Fuzz every venue's parsers within the budget; return the figures."""
    budget_s = context.budget_s or (SMALL_BUDGET_S if context.small else FULL_BUDGET_S)
    per_parser_s = budget_s / len(DEPTHS)
    parsers: dict[str, Findings] = {}
    for venue in VENUES:
        for depth in DEPTHS:
            name = f"{venue} {'best bid/offer' if depth is None else f'{depth}-level book'}"
            parsers[name] = fuzz_parser(venue, depth, per_parser_s, context.seed)
    unexpected = sum(seen["count"] for f in parsers.values() for seen in f.unexpected.values())
    slowest_name, slowest = max(parsers.items(), key=lambda item: item[1].slowest_ms)
    figures: list[Figure] = [
        zero("unexpected_exceptions", "exceptions other than the documented parse errors", unexpected),
        below("slowest_ms", f"slowest input ({slowest_name})", round(slowest.slowest_ms, 2), 100, "ms"),
        measured("inputs", "frames under test parsed", sum(f.inputs for f in parsers.values())),
    ]
    details = {
        name: {
            "inputs": f.inputs,
            "documented_errors": f.documented_errors,
            "slowest_ms": f.slowest_ms,
            "slowest_input": f.slowest_input,
            "unexpected": f.unexpected,
        }
        for name, f in parsers.items()
    }
    size = {"budget_s_per_venue": budget_s, "parsers": len(parsers)}
    return Outcome(figures, size=size, details=details)


def _limit(context: Context) -> float:
    budget_s = context.budget_s or (SMALL_BUDGET_S if context.small else FULL_BUDGET_S)
    return 120.0 + 2 * budget_s * len(VENUES)


SCENARIO: Final = Scenario(8, "fuzzing", "Parser fuzzing", run_scenario, _limit)
