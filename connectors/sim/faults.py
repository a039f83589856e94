"""The simulator's fault switches: lost, duplicated, corrupt or crossed book messages, stalls, raw frames.

`SimulatorFaults` is the half of `ExchangeSimulator`'s control API that breaks
things on purpose, over its venues' endpoints: each book fault and stall is
counted per venue (`faults_injected`); dropped and silent connections and raw
frames are logged.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Literal, get_args

import structlog

from connectors.sim.endpoint import VenueEndpoint
from connectors.sim.market import SimulatorError

__all__ = ["Fault", "SimulatorFaults"]

Fault = Literal["gap", "duplicate", "bad_checksum", "crossed", "stall"]

_log = structlog.get_logger(__name__)


class SimulatorFaults:
    """Inject faults into simulated venues' endpoints, and count them."""

    def __init__(self, endpoints: Mapping[str, VenueEndpoint]) -> None:
        """Break things on `endpoints` (by venue id) when told to."""
        self._endpoints = dict(endpoints)
        self._faults: Counter[tuple[str, str]] = Counter()

    async def inject_gap(self, venue: str, symbol: str) -> None:
        """Lose one depth message: the book changes, nobody is told, the next message skips a sequence number.

        Kraken, which numbers nothing, shows it as a checksum that no longer matches the client's book.
        """
        self._symbol_endpoint(venue, symbol).lose_message(symbol)
        self._count(venue, symbol, "gap")

    async def inject_duplicate(self, venue: str, symbol: str) -> None:
        """Send the symbol's next depth message twice, same sequence numbers."""
        self._symbol_endpoint(venue, symbol).books.queue_duplicate(symbol)
        self._count(venue, symbol, "duplicate")

    async def inject_bad_checksum(self, venue: str, symbol: str) -> None:
        """Send the symbol's next depth message with a wrong checksum (Kraken; OKX with `okx_checksums`)."""
        endpoint = self._symbol_endpoint(venue, symbol)
        if not endpoint.checksums:
            raise SimulatorError(f"{venue} sends no checksums here (OKX needs okx_checksums=True)")
        endpoint.books.queue_bad_checksum(symbol)
        self._count(venue, symbol, "bad_checksum")

    async def inject_crossed(self, venue: str, symbol: str) -> None:
        """Publish a crossed top now: the bid one tick above the ask, in the BBO and the depth alike."""
        endpoint = self._symbol_endpoint(venue, symbol)
        endpoint.publish(symbol, endpoint.books.crossed_top(symbol))
        self._count(venue, symbol, "crossed")
        await asyncio.sleep(0)

    def stall(self, venue: str, seconds: float) -> None:
        """Hold back the venue's market data for `seconds`, sockets, control replies and heartbeats kept.

        Autoplay leaves a stalled venue's books still, so nothing is lost; a quote pushed during
        the stall is applied but never sent, and shows as a gap once data flows again.
        """
        endpoint = self._endpoint(venue)
        if seconds <= 0:
            raise SimulatorError(f"a stall needs a positive duration, got {seconds}")
        endpoint.stalled_until = asyncio.get_running_loop().time() + seconds
        self._count(venue, None, "stall")

    def resume(self, venue: str) -> None:
        """End the venue's stall now."""
        self._endpoint(venue).stalled_until = 0.0

    def faults_injected(self, venue: str, kind: Fault | None = None) -> int:
        """Return how many faults (of `kind`, or of any kind) were injected into the venue."""
        self._endpoint(venue)
        if kind is not None and kind not in get_args(Fault):
            raise SimulatorError(f"unknown fault {kind!r}; faults: {list(get_args(Fault))}")
        return sum(n for (v, k), n in self._faults.items() if v == venue and kind in (None, k))

    async def send_raw(self, venue: str, frame: str | bytes) -> None:
        """Send a frame as is (text for str, binary for bytes) to every open connection of the venue."""
        self._endpoint(venue).send_all(frame)
        await asyncio.sleep(0)

    async def drop_connections(self, venue: str) -> None:
        """Abort every connection of the venue at the TCP level, without a close frame."""
        count = await self._endpoint(venue).drop_all()
        _log.info("sim_connections_dropped", venue=venue, count=count)

    def set_silent(self, venue: str, silent: bool) -> None:
        """Keep the venue's sockets open but answer nothing and publish nothing, until set back."""
        self._endpoint(venue).silent = silent
        _log.info("sim_silent_set", venue=venue, silent=silent)

    def _endpoint(self, venue: str) -> VenueEndpoint:
        try:
            return self._endpoints[venue]
        except KeyError:
            raise SimulatorError(f"{venue!r} is not simulated (venues: {sorted(self._endpoints)})") from None

    def _symbol_endpoint(self, venue: str, symbol: str) -> VenueEndpoint:
        endpoint = self._endpoint(venue)
        if symbol not in endpoint.symbols:
            raise SimulatorError(f"{symbol!r} is not simulated (symbols: {list(endpoint.symbols)})")
        return endpoint

    def _count(self, venue: str, symbol: str | None, kind: Fault) -> None:
        self._faults[venue, kind] += 1
        _log.info("sim_fault_injected", venue=venue, symbol=symbol, fault=kind)
