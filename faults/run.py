"""The fault suite: `python -m faults.run` (full, what `make faults` runs) or `--small` (seconds, for tests).

    python -m faults.run [--small] [--only a,b] [--out DIR] [--seed N] [--broker tansu|apache]
                         [--budget S]

Each scenario of `faults.registry` runs in a fresh worker process (`faults.worker`) in its own
session, killed past the scenario's time limit. The run prints a Markdown table of every figure
beside its target and writes `<out>/<date>.json` (figures, details, the machine, the commit,
the seed, the broker each scenario used) and `<out>/<date>.md` (the table); a day's later runs
write `<date>-2`, `<date>-3`, ...: none overwrites another. A figure that
misses its target is reported as missed; the run fails (exit 1) only when a scenario could not
complete, and then says why in the table as well.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from faults.registry import SCENARIOS
from faults.report import machine, markdown
from faults.scenario import BROKERS, Context

REPO: Final = Path(__file__).resolve().parents[1]
_LOG_TAIL_CHARS: Final = 3000


def run_scenario(name: str, context: Context, log: Path) -> dict[str, Any]:
    """Run scenario `name` in a worker process; return its outcome, or {"error": ...} if it failed."""
    scenario = SCENARIOS[name]
    result = context.workdir / "result.json"
    command = [
        sys.executable,
        "-m",
        "faults.worker",
        name,
        "--result",
        str(result),
        "--workdir",
        str(context.workdir),
        "--seed",
        str(context.seed),
        "--broker",
        context.broker,
    ]
    if context.small:
        command.append("--small")
    if context.budget_s is not None:
        command += ["--budget", str(context.budget_s)]
    limit_s = scenario.time_limit_s(context)
    head = {"number": scenario.number, "title": scenario.title, "time_limit_s": limit_s}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=out, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            with contextlib.suppress(ProcessLookupError):  # the usual case: it and its children are gone
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if code != 0 or not result.exists():
        tail = log.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        what = f"timed out after {limit_s:.0f} s" if code is None else f"exited with {code}"
        sys.stderr.write(f"faults: {name} {what}:\n{tail}\n")
        return head | {"error": what, "log_tail": tail}
    outcome: dict[str, Any] = orjson.loads(result.read_bytes())
    return head | outcome


def free_stem(out: Path, date: str) -> str:
    """`<date>`, or `<date>-2`, `-3`, ... when that day already has results: a run never overwrites one."""
    stem, number = date, 1
    while (out / f"{stem}.json").exists() or (out / f"{stem}.md").exists():
        number += 1
        stem = f"{date}-{number}"
    return stem


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenarios, print the table, write the JSON and Markdown results."""
    parser = argparse.ArgumentParser(
        prog="python -m faults.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="each scenario's small version (seconds)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios to run")
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default: faults/results; small: none)"
    )
    parser.add_argument("--seed", type=int, default=19, help="the seed of every scenario (default 19)")
    parser.add_argument("--broker", choices=BROKERS, default="tansu", help="the Kafka broker to start")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds per venue for the fuzzing scenario (default: 600; small: 0.6)",
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := set(chosen) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    out = args.out if args.out is not None or args.small else REPO / "faults" / "results"
    date = datetime.datetime.now(datetime.UTC).date().isoformat()
    results: dict[str, Any] = {
        "date": date,
        "mode": "small" if args.small else "full",
        "seed": args.seed,
        "broker": args.broker,
        "budget_s": args.budget,
        "machine": machine(REPO),
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory(prefix="smartroute-faults-") as tmp:
        for name in chosen:
            sys.stderr.write(f"faults: {name} ({'small' if args.small else 'full'})\n")
            sys.stderr.flush()
            workdir = Path(tmp) / name
            workdir.mkdir()
            context = Context(args.small, args.seed, workdir, args.broker, args.budget)
            results["scenarios"][name] = run_scenario(name, context, Path(tmp) / f"{name}.log")
    results["machine"]["load_average_1m_end"] = os.getloadavg()[0]
    table = markdown(results)
    sys.stdout.write(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        stem = free_stem(out, date)
        (out / f"{stem}.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
        (out / f"{stem}.md").write_text(table)
        sys.stdout.write(f"\nwritten: {out / stem}.json and .md\n")
    return 1 if any("error" in s for s in results["scenarios"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
