"""Detector latency scenario: quote arrival → opportunity event, 5 venues × 200 symbols.

The quotes come from the simulator's seeded price model (`connectors.sim.market`),
with a dislocation starting every tick somewhere among the symbols, so that many
opportunities open, update and close. They are generated before timing starts; in the timed loop
each one is built as a parser builds it (`Quote` with a fresh `received_ns`)
and handed to `PriceCache.update` and `ArbitrageDetector.on_quote`, exactly as
the daemon does. The latency of an event is the time from just before its
triggering quote was built to the `on_event` call, on `perf_counter_ns`.
Parse cost is not in it: the ingest scenario measures that. A sweep runs
every 100 ms (the daemon's default), as in the daemon; its events have no
triggering quote and are not timed.
"""

from __future__ import annotations

import gc
import statistics
import time
from decimal import Decimal
from typing import Final

from bench.server import bench_symbols
from connectors.sim.market import BookTop, MarketModel
from connectors.types import VENUE_IDS, Quote
from router.cache import PriceCache
from router.detector import ArbitrageDetector, Opportunity

_DISLOCATION_PROBABILITY: Final = 1.0  # one new dislocation per tick, somewhere among the symbols
_SWEEP_INTERVAL_NS: Final = 100_000_000
_SWEEP_CHECK_EVERY: Final = 256


def quote_stream(venues: int, symbols: int, quotes: int, seed: int) -> list[tuple[str, str, BookTop]]:
    """Return `quotes` (venue, symbol, top) updates from the seeded multi-venue price model."""
    if not 2 <= venues <= len(VENUE_IDS):
        raise ValueError(f"venues must be within 2..{len(VENUE_IDS)}, got {venues}")
    model = MarketModel(
        VENUE_IDS[:venues],
        bench_symbols(symbols),
        seed=seed,
        dislocation_probability=_DISLOCATION_PROBABILITY,
    )
    stream = [(venue, symbol, top) for (venue, symbol), top in model.quotes().items()]
    while len(stream) < quotes:
        stream.extend((venue, symbol, top) for (venue, symbol), top in model.step().items())
    return stream[:quotes]


class _Clock:
    """When the quote being handled arrived; the detector's callback reads it."""

    __slots__ = ("arrived_ns", "latencies_ns")

    def __init__(self) -> None:
        self.arrived_ns = 0
        self.latencies_ns: list[int] = []

    def on_event(self, event: Opportunity) -> None:
        if self.arrived_ns:
            self.latencies_ns.append(time.perf_counter_ns() - self.arrived_ns)


def run_latency(*, venues: int, symbols: int, quotes: int, seed: int) -> dict[str, float]:
    """Feed the quote stream through cache and detector; return event latency percentiles in µs."""
    stream = quote_stream(venues, symbols, quotes, seed)
    # The pre-built stream is millions of tracked objects: keep it out of the collector's full
    # passes, which would otherwise add pauses that the daemon, holding no such list, never has.
    gc.collect()
    gc.freeze()
    clock = _Clock()
    cache = PriceCache()
    detector = ArbitrageDetector(cache, dict.fromkeys(VENUE_IDS[:venues], Decimal(10)), clock.on_event)
    perf_ns, wall_ns = time.perf_counter_ns, time.time_ns
    started_ns = next_sweep_ns = perf_ns()
    for seq, (venue, symbol, top) in enumerate(stream):
        clock.arrived_ns = perf_ns()
        quote = Quote(venue, symbol, top.bid, top.bid_qty, top.ask, top.ask_qty, None, wall_ns(), seq)
        cache.update(quote)
        detector.on_quote(quote)
        if seq % _SWEEP_CHECK_EVERY == 0 and perf_ns() >= next_sweep_ns:
            clock.arrived_ns = 0
            detector.sweep()
            next_sweep_ns += _SWEEP_INTERVAL_NS
    elapsed_s = (perf_ns() - started_ns) / 1e9
    samples = clock.latencies_ns
    if len(samples) < 2:
        raise RuntimeError(f"only {len(samples)} opportunity events from {quotes} quotes: nothing to time")
    cuts = statistics.quantiles(samples, n=1000, method="inclusive")
    return {
        "quotes": len(stream),
        "events": len(samples),
        "quotes_per_s": len(stream) / elapsed_s,
        "p50_us": cuts[499] / 1000,
        "p99_us": cuts[989] / 1000,
        "p999_us": cuts[998] / 1000,
        "max_us": max(samples) / 1000,
    }
