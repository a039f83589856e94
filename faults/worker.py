"""One scenario in a fresh process: `python -m faults.worker NAME --result FILE [--small] [--seed N] ...`.

Each scenario runs in its own process (started by `faults.run`, in its own session, killed past
the scenario's time limit), so that it starts from a fresh Prometheus registry and nothing it
started (brokers, daemons, simulators) outlives it. It writes its `Outcome` as JSON to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import orjson

from faults.registry import SCENARIOS
from faults.scenario import BROKERS, Context


def main(argv: Sequence[str] | None = None) -> int:
    """Run one scenario and write its outcome, the brokers it used and its duration to --result."""
    parser = argparse.ArgumentParser(prog="python -m faults.worker")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--broker", choices=BROKERS, default="tansu")
    parser.add_argument("--budget", type=float, default=None)
    args = parser.parse_args(argv)
    context = Context(args.small, args.seed, args.workdir, args.broker, args.budget)
    started = time.monotonic()
    outcome = asyncio.run(SCENARIOS[args.scenario].run(context))
    value = asdict(outcome) | {"seconds": time.monotonic() - started, "brokers": context.brokers_used}
    args.result.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
