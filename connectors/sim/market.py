"""The simulator's price model: correlated random walks with occasional cross-venue dislocations.

Every symbol has one "true" mid that follows a geometric random walk. Each
venue quotes that mid plus a small mean-reverting venue offset, plus, now and
then, a dislocation of 30–80 bps that decays back to zero over 1–3 s; around
the resulting venue mid it quotes half a spread each side. Prices are
quantized to the symbol's tick and sizes to its lot step, and come out as
exact `Decimal`s with the tick's (or step's) precision, as exchanges send them.

The model is deterministic for a given seed: all randomness comes from one
`random.Random(seed)`, and time advances only through `step()`, one tick of
`tick_interval_s` at a time, never from the wall clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from connectors.errors import SmartrouteError

SECONDS_PER_YEAR: Final = 365.0 * 86_400.0

# ~5 dislocations a minute at the default 50 ms tick: often enough that a demo
# shows cross-venue opportunities, rare enough that most of the time there are none.
DEFAULT_DISLOCATION_PROBABILITY: Final = 0.004

# Venue offsets (in bps) revert to zero with this rate; their stationary spread
# stays far below taker fees, so only dislocations open real arbitrage.
_OFFSET_STDEV_BPS: Final = 1.0
_OFFSET_REVERSION_PER_S: Final = 0.5
_SIZE_REDRAW_PROBABILITY: Final = 0.3
_DISLOCATION_BPS: Final = (30.0, 80.0)
_DISLOCATION_DURATION_S: Final = (1.0, 3.0)


class SimulatorError(SmartrouteError):
    """The exchange simulator was misused: unknown venue or symbol, bad quote, bad setting."""


@dataclass(frozen=True, slots=True)
class BookTop:
    """Best bid and offer as one venue would publish it: exact decimals, quantized."""

    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """How one symbol trades: start price, tick, lot step, size range, volatility and spread."""

    start_price: float
    tick: Decimal
    step: Decimal
    min_qty: float
    max_qty: float
    annual_volatility: float
    spread_bps: tuple[float, float]


DEFAULT_SPECS: Final[Mapping[str, SymbolSpec]] = {
    "BTC-USDT": SymbolSpec(64_000.0, Decimal("0.01"), Decimal("0.00001"), 0.0005, 4.0, 0.55, (0.05, 0.8)),
    "ETH-USDT": SymbolSpec(3_200.0, Decimal("0.01"), Decimal("0.0001"), 0.005, 60.0, 0.65, (0.1, 1.0)),
    "SOL-USDT": SymbolSpec(150.0, Decimal("0.01"), Decimal("0.001"), 0.1, 1_500.0, 0.8, (0.3, 2.0)),
}
_OTHER_SPEC: Final = SymbolSpec(100.0, Decimal("0.01"), Decimal("0.01"), 1.0, 5_000.0, 0.8, (1.0, 5.0))


def spec_for(symbol: str) -> SymbolSpec:
    """Return the default trading spec of a canonical symbol (generic ~100 USDT spec if unknown).

    A USD or USDC pair takes its USDT sibling's spec (`BTC-USD` trades like `BTC-USDT`).
    """
    base, _, quote = symbol.partition("-")
    sibling = f"{base}-USDT" if quote in ("USD", "USDC") else symbol
    return DEFAULT_SPECS.get(symbol) or DEFAULT_SPECS.get(sibling, _OTHER_SPEC)


@dataclass(slots=True)
class _Dislocation:
    amplitude_bps: float
    duration_s: float
    elapsed_s: float = 0.0

    def offset_bps(self) -> float:
        return self.amplitude_bps * max(0.0, 1.0 - self.elapsed_s / self.duration_s)


@dataclass(slots=True)
class _VenueLeg:
    """Mutable per-(venue, symbol) model state."""

    offset_bps: float = 0.0
    dislocation: _Dislocation | None = None
    bid_qty: Decimal = Decimal(0)
    ask_qty: Decimal = Decimal(0)
    top: BookTop | None = None


@dataclass(slots=True)
class _SymbolState:
    spec: SymbolSpec
    mid: float
    legs: dict[str, _VenueLeg] = field(default_factory=dict)


class MarketModel:
    """Correlated per-venue quotes for a set of symbols, advanced one tick at a time."""

    def __init__(
        self,
        venues: Sequence[str],
        symbols: Sequence[str],
        *,
        seed: int | None = None,
        tick_interval_s: float = 0.05,
        dislocation_probability: float = DEFAULT_DISLOCATION_PROBABILITY,
        specs: Mapping[str, SymbolSpec] | None = None,
    ) -> None:
        if not venues or not symbols:
            raise SimulatorError("MarketModel needs at least one venue and one symbol")
        if tick_interval_s <= 0:
            raise SimulatorError("tick_interval_s must be positive")
        if not 0.0 <= dislocation_probability <= 1.0:
            raise SimulatorError("dislocation_probability must be within [0, 1]")
        self._rng = random.Random(seed)
        self._venues = tuple(venues)
        self._dt = tick_interval_s
        self._p_dislocation = dislocation_probability
        self._symbols: dict[str, _SymbolState] = {}
        for symbol in symbols:
            spec = (specs or {}).get(symbol) or spec_for(symbol)
            state = _SymbolState(spec, spec.start_price)
            for venue in self._venues:
                leg = _VenueLeg(offset_bps=self._rng.gauss(0.0, _OFFSET_STDEV_BPS))
                leg.bid_qty, leg.ask_qty = self._draw_qty(spec), self._draw_qty(spec)
                state.legs[venue] = leg
            self._symbols[symbol] = state
        self._requote_all()

    @property
    def venues(self) -> tuple[str, ...]:
        """Venues this model quotes, in construction order."""
        return self._venues

    @property
    def symbols(self) -> tuple[str, ...]:
        """Canonical symbols this model quotes, in construction order."""
        return tuple(self._symbols)

    def quote(self, venue: str, symbol: str) -> BookTop:
        """Return the current quote of one venue for one symbol."""
        top = self._symbols[symbol].legs[venue].top
        assert top is not None  # every leg is quoted in __init__
        return top

    def quotes(self) -> dict[tuple[str, str], BookTop]:
        """Return every current quote keyed by (venue, symbol)."""
        return {(v, s): self.quote(v, s) for s in self._symbols for v in self._venues}

    def step(self) -> dict[tuple[str, str], BookTop]:
        """Advance the model by one tick and return the quotes that changed, keyed by (venue, symbol)."""
        self._maybe_start_dislocation()
        for state in self._symbols.values():
            self._walk(state)
        before = {key: top for key, top in self.quotes().items()}
        self._requote_all()
        return {key: top for key, top in self.quotes().items() if top != before[key]}

    def _maybe_start_dislocation(self) -> None:
        if self._rng.random() >= self._p_dislocation:
            return
        symbol = self._rng.choice(tuple(self._symbols))
        leg = self._symbols[symbol].legs[self._rng.choice(self._venues)]
        amplitude = self._rng.uniform(*_DISLOCATION_BPS) * self._rng.choice((-1.0, 1.0))
        duration = self._rng.uniform(*_DISLOCATION_DURATION_S)
        if leg.dislocation is None:
            leg.dislocation = _Dislocation(amplitude, duration)

    def _walk(self, state: _SymbolState) -> None:
        sigma = state.spec.annual_volatility * math.sqrt(self._dt / SECONDS_PER_YEAR)
        state.mid *= math.exp(sigma * self._rng.gauss(0.0, 1.0) - 0.5 * sigma * sigma)
        theta = _OFFSET_REVERSION_PER_S * self._dt
        noise = _OFFSET_STDEV_BPS * math.sqrt(2.0 * theta)
        for leg in state.legs.values():
            leg.offset_bps += -theta * leg.offset_bps + noise * self._rng.gauss(0.0, 1.0)
            if leg.dislocation is not None:
                leg.dislocation.elapsed_s += self._dt
                if leg.dislocation.elapsed_s >= leg.dislocation.duration_s:
                    leg.dislocation = None
            if self._rng.random() < _SIZE_REDRAW_PROBABILITY:
                leg.bid_qty = self._draw_qty(state.spec)
            if self._rng.random() < _SIZE_REDRAW_PROBABILITY:
                leg.ask_qty = self._draw_qty(state.spec)

    def _requote_all(self) -> None:
        for state in self._symbols.values():
            for leg in state.legs.values():
                leg.top = self._price(state, leg)

    def _price(self, state: _SymbolState, leg: _VenueLeg) -> BookTop:
        spec = state.spec
        dislocation = leg.dislocation.offset_bps() if leg.dislocation is not None else 0.0
        mid = state.mid * (1.0 + (leg.offset_bps + dislocation) / 10_000.0)
        half_spread = mid * self._rng.uniform(*spec.spread_bps) / 20_000.0
        tick = float(spec.tick)
        bid_ticks = max(1, math.floor((mid - half_spread) / tick))
        ask_ticks = max(bid_ticks + 1, math.ceil((mid + half_spread) / tick))
        return BookTop(
            bid=Decimal(bid_ticks) * spec.tick,
            bid_qty=leg.bid_qty,
            ask=Decimal(ask_ticks) * spec.tick,
            ask_qty=leg.ask_qty,
        )

    def _draw_qty(self, spec: SymbolSpec) -> Decimal:
        # Log-uniform: small resting sizes are common, large ones rare.
        qty = math.exp(self._rng.uniform(math.log(spec.min_qty), math.log(spec.max_qty)))
        steps = max(1, round(qty / float(spec.step)))
        return Decimal(steps) * spec.step


def cross_venue_spread_bps(quotes: Mapping[tuple[str, str], BookTop], symbol: str) -> Decimal:
    """Return a symbol's best gross cross-venue spread, max over venue pairs of (bid − ask) / ask, in bps."""
    tops = [(venue, top) for (venue, s), top in quotes.items() if s == symbol]
    spreads = [
        (sell.bid - buy.ask) / buy.ask * 10_000
        for buy_venue, buy in tops
        for sell_venue, sell in tops
        if buy_venue != sell_venue
    ]
    if not spreads:
        raise SimulatorError("a cross-venue spread needs quotes from two venues")
    return max(spreads)
