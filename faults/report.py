"""The fault suite's results: the machine and commit they come from, and the Markdown table.

Every figure is shown as measured, beside its target, with whether it is met; a missed target
reads "missed" in the table, it never fails the run.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.report import machine as bench_machine


def commit(repo: Path) -> str:
    """Return the smartroute commit the suite ran on, with `+dirty` when the tree had changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if changes else "")


def machine(repo: Path) -> dict[str, Any]:
    """The bench's description of the machine (cores, CPU, load average, packages), with the commit."""
    return bench_machine() | {"smartroute_commit": commit(repo)}


def _row(cells: tuple[object, ...]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _value(figure: Mapping[str, Any]) -> str:
    value = figure["value"]
    text = f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"
    return f"{text} {figure['unit']}".strip()


def _verdict(figure: Mapping[str, Any]) -> str:
    if figure["met"] is None:
        return ""
    return "met" if figure["met"] else "**missed**"


def markdown(results: Mapping[str, Any]) -> str:
    """Return the results as Markdown: one line on the run, a summary, then a table per scenario."""
    m = results["machine"]
    lines = [
        f"Fault suite of {results['date']} ({results['mode']} mode, seed {results['seed']}): {m['cpu']}, "
        f"{m['cores']} cores, Python {m['python']}, smartroute {m['smartroute_commit'][:12]}; load average "
        f"{m['load_average_1m']:.1f} at start, {m.get('load_average_1m_end', 0.0):.1f} at end.",
        "",
        _row(("#", "scenario", "targets met", "broker", "seconds")),
        _row(("---:", "---", "---:", "---", "---:")),
    ]
    scenarios: Mapping[str, Mapping[str, Any]] = results["scenarios"]
    for name, s in scenarios.items():
        if "error" in s:
            lines.append(_row((s["number"], s["title"], f"**did not complete**: {s['error']}", "", "")))
            continue
        targeted = [f for f in s["figures"] if f["met"] is not None]
        met = sum(1 for f in targeted if f["met"])
        broker = ", ".join(s["brokers"]) or "none"
        lines.append(
            _row(
                (
                    s["number"],
                    f"{s['title']} (`{name}`)",
                    f"{met}/{len(targeted)}",
                    broker,
                    f"{s['seconds']:.0f}",
                )
            )
        )
    for name, s in scenarios.items():
        if "error" in s:
            continue
        size = ", ".join(
            f"{key} {value:,}" if isinstance(value, int) else f"{key} {value}"
            for key, value in s["size"].items()
        )
        lines += ["", f"**{s['number']}. {s['title']}** (`{name}`) — {size}", ""]
        lines += [_row(("figure", "measured", "target", "")), _row(("---", "---:", "---:", "---"))]
        for figure in s["figures"]:
            lines.append(_row((figure["label"], _value(figure), figure["target"], _verdict(figure))))
    return "\n".join(lines).rstrip() + "\n"
