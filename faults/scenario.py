"""What every fault scenario shares: its registry entry, its context, and the figures it returns.

A scenario is one module of `faults/` exposing `SCENARIO = Scenario(...)`, listed in
`faults.registry`. Its `run(context)` is a coroutine, seeded by `context.seed`, sized by
`context.small`, talking only to loopback, that returns an `Outcome`: figures, each with its
target and whether it is met (a missed target is a figure like any other, never an exception),
the sizes it ran at and whatever details explain the figures.

    figures = [zero("new_executions", "new executions at the venue", 0)]
    return Outcome(figures, size={"requests": 50}, details={...})
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from daemon.apache_kafka import ApacheKafka
from daemon.broker import EmbeddedBroker, LocalBroker

BROKERS: Final = ("tansu", "apache")


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure beside its target: `met` is None for a figure without a target.

    `hard`: a target the product promises outright (the zeros); the small runs in `make test`
    fail on a hard figure that is missed. Soft targets (timings) are reported, never asserted.
    """

    key: str
    label: str
    value: float
    target: str
    met: bool | None
    hard: bool = False
    unit: str = ""


def zero(key: str, label: str, value: float) -> Figure:
    """A count that must be 0 (a hard target)."""
    return Figure(key, label, value, "0", value == 0, hard=True)


def below(key: str, label: str, value: float, limit: float, unit: str) -> Figure:
    """A soft figure that should stay under `limit` (a timing: reported, never asserted)."""
    return Figure(key, label, value, f"< {limit:g} {unit}".strip(), value < limit, unit=unit)


def measured(key: str, label: str, value: float, unit: str = "") -> Figure:
    """A figure without a target: the size of what was done, to read the others by."""
    return Figure(key, label, value, "", None, unit=unit)


@dataclass(slots=True)
class Outcome:
    """What a scenario returns: its figures, the sizes it ran at, details behind the figures."""

    figures: list[Figure]
    size: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Context:
    """How a scenario runs: small or full, its seed, a scratch folder, the broker kind to use."""

    small: bool
    seed: int
    workdir: Path
    broker: str = "tansu"
    budget_s: float | None = None  # a time budget, for the scenarios that take one (fuzzing)
    brokers_used: list[str] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def kafka(self) -> AsyncIterator[str]:
        """Start a broker of `self.broker` on loopback for the block; yield its bootstrap servers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        broker: LocalBroker
        if self.broker == "tansu":
            broker = EmbeddedBroker(log_path=self.workdir / "tansu.log")
        elif self.broker == "apache":
            broker = ApacheKafka(log_dir=self.workdir / "apache")
        else:
            raise ValueError(f"unknown broker {self.broker!r}; known: {', '.join(BROKERS)}")
        async with broker:
            self.brokers_used.append(self.broker)
            yield broker.bootstrap_servers


@dataclass(frozen=True, slots=True)
class Scenario:
    """One entry of the registry: issue #19's number, a name for `--only`, a title, how to run it.

    `time_limit_s(context)` bounds the whole run (the worker is killed past it).
    """

    number: int
    name: str
    title: str
    run: Callable[[Context], Coroutine[Any, Any, Outcome]]
    time_limit_s: Callable[[Context], float]
