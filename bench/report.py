"""Summaries of bench runs: medians, within-round ratios, the machine, and the Markdown table."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any, Final

# The targets, shown beside what was reached (never turned into a pass/fail).
TARGETS: Final = {
    "b/a": ">= 0.85",
    "b/c": ">= 1.5",
    "b/d": ">= 5",
    "p99_us": "<= 200",
    "rss_growth_mib": "flat",
    "router_rps": ">= 2,000",
    "router_p99_ms": "<= 50",
    "router/bare": ">= 0.5",
    "loaded/idle": "<= 1.5",
    "reaction_p99_ms": "<= 25",
    "router_part_p99_ms": "<= 2",
}
# b/a_http has no target: it shows what the pipeline costs on top of its own transport.
RATIOS: Final = (("b/a", "b", "a"), ("b/c", "b", "c"), ("b/d", "b", "d"), ("b/a_http", "b", "a_http"))
_PACKAGES: Final = ("websockets", "aiohttp", "orjson", "msgspec", "aiokafka", "cryptofeed", "ccxt")


def machine() -> dict[str, Any]:
    """Describe the machine and software the figures come from."""
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        lscpu = ""
    for line in lscpu.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "Model name":
            model = value.strip()
    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other work on the machine skews absolute figures (ratios within a round less so).
        "load_average_1m": os.getloadavg()[0],
        "packages": versions,
    }


def median_of(runs: Sequence[Mapping[str, Any]], key: str) -> float:
    """Return the median of `key` over runs."""
    return statistics.median(float(run[key]) for run in runs)


def summarize_ingest(rounds: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Return each client's median msgs/s and each ratio's median over rounds (taken within each round)."""
    clients = sorted({name for round_ in rounds for name in round_})
    medians = {name: median_of([r[name] for r in rounds if name in r], "msgs_per_s") for name in clients}
    ratios = {}
    for label, top, bottom in RATIOS:
        per_round = [
            r[top]["msgs_per_s"] / r[bottom]["msgs_per_s"] for r in rounds if top in r and bottom in r
        ]
        if per_round:
            ratios[label] = statistics.median(per_round)
    server_cpu = {
        name: median_of(runs, "server_cpu_share")
        for name in clients
        if (runs := [r[name] for r in rounds if "server_cpu_share" in r.get(name, {})])
    }
    return {"median_msgs_per_s": medians, "ratios": ratios, "median_server_cpu_share": server_cpu}


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def markdown(results: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """Return the results as Markdown tables (what the README and bench/results/*.md show)."""
    m = results["machine"]
    lines = [
        f"Bench of {results['date']} ({results['mode']} mode): {m['cpu']}, {m['cores']} cores, "
        f"Python {m['python']}; medians of {results['settings']['runs']} interleaved fresh-process runs; "
        f"load average {m['load_average_1m']:.1f} at start, {m.get('load_average_1m_end', 0.0):.1f} at end.",
        "",
    ]
    ingest = results.get("ingest")
    if ingest:
        lines += [
            f"**Ingest** — {results['settings']['frames']} Binance bookTicker frames, 200 symbols, loopback",
            "",
        ]
        lines += [
            _row(("client", "msgs/s (median)", "ratio to a", "server CPU")),
            _row(("---", "---:", "---:", "---:")),
        ]
        base = ingest["median_msgs_per_s"].get("a")
        cpu = ingest.get("median_server_cpu_share", {})
        for name, rate in ingest["median_msgs_per_s"].items():
            ratio = f"{rate / base:.2f}" if base else "—"
            share = f"{cpu[name]:.0%}" if name in cpu else "—"
            lines.append(_row((f"{name}: {labels.get(name, name)}", f"{rate:,.0f}", ratio, share)))
        for name, reason in ingest.get("skipped", {}).items():
            lines.append(_row((f"{name}: {labels.get(name, name)}", f"skipped: {reason}", "—", "—")))
        lines += [
            "",
            _row(("ratio (median of per-round ratios)", "reached", "target")),
            _row(("---", "---:", "---:")),
        ]
        for label, value in ingest["ratios"].items():
            lines.append(_row((label, f"{value:.2f}", TARGETS.get(label, "—"))))
        lines.append("")
    lines += _latency_router_memory(results)
    return "\n".join(lines).rstrip() + "\n"


def _latency_router_memory(results: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, render in (("latency", _latency_lines), ("memory", _memory_lines)):
        if results.get(name):
            lines += [*render(results[name]["summary"]), ""]
    if results.get("router_kafka"):
        lines += [*router_kafka_lines(results["router_kafka"]), ""]
    if results.get("isolation"):
        lines += [*isolation_lines(results["isolation"]["summary"]), ""]
    if results.get("reaction"):
        lines += [*reaction_lines(results["reaction"]["summary"]), ""]
    if results.get("scaleout"):
        lines += [*scaleout_lines(results["scaleout"]["summary"]), ""]
    return lines


def _latency_lines(s: Mapping[str, Any]) -> list[str]:
    return [
        f"**Detector latency** — quote arrival → opportunity event, {s['venues']} venues × "
        f"{s['symbols']} symbols, {s['events']:,.0f} events at {s['quotes_per_s']:,.0f} quotes/s "
        "(medians of runs)",
        "",
        _row(("percentile", "µs", "target µs")),
        _row(("---", "---:", "---:")),
        _row(("p50", f"{s['p50_us']:.1f}", "")),
        _row(("p99", f"{s['p99_us']:.1f}", TARGETS["p99_us"])),
        _row(("p999", f"{s['p999_us']:.1f}", "")),
    ]


def _memory_lines(s: Mapping[str, Any]) -> list[str]:
    return [
        f"**Memory** — daemon (every role) for {s['duration_s']:.0f} s "
        f"at {s['quotes_per_s']:,.0f} quotes/s; growth target: flat",
        "",
        _row(("RSS start MiB", "RSS end MiB", "growth MiB", "max MiB", "tasks start → end")),
        _row(("---:",) * 5),
        _row((
            f"{s['rss_start_mib']:.1f}", f"{s['rss_end_mib']:.1f}", f"{s['rss_growth_mib']:+.1f}",
            f"{s['rss_max_mib']:.1f}", f"{s['tasks_start']} → {s['tasks_end']}",
        )),
    ]  # fmt: skip


_LOOP_LABELS: Final = {
    "router": "router (paper)",
    "bare": "bare, send+commit per partition (the router's first loop)",
    "bare_fetch": "bare, one send+commit per fetch",
}


def router_kafka_lines(r: Mapping[str, Any]) -> list[str]:
    """Return the router-vs-bare-loop table: one row per (broker, loop), the ratio on the router's row."""
    lines = [
        f"**Router through Kafka** — paper market orders, {r['window']} in flight, {r['requests']} timed "
        "requests a run; bare = consume → produce a same-size result → commit, nothing else "
        "(medians of runs; the ratio is the median of per-round ratios)",
        "",
        _row(("broker", "loop", "requests/s", "p50 ms", "p99 ms", "router / this rate")),
        _row(("---", "---", "---:", "---:", "---:", "---:")),
    ]
    for broker, data in r["brokers"].items():
        s = data["summary"]
        for loop, label in _LOOP_LABELS.items():
            f = s[loop]
            ratio = f"{s[f'router/{loop}']:.2f}" if f"router/{loop}" in s else ""
            lines.append(_row((broker, label, f"{f['requests_per_s']:,.0f}", f"{f['p50_ms']:.1f}",
                               f"{f['p99_ms']:.1f}", ratio)))  # fmt: skip
    lines.append(
        _row(
            ("target", "router", TARGETS["router_rps"], "", TARGETS["router_p99_ms"], TARGETS["router/bare"])
        )
    )
    return lines


def isolation_lines(s: Mapping[str, Any]) -> list[str]:
    """Return the feed-isolation table: quote sent → opportunity detected, idle vs loaded router."""
    lines = [
        f"**Feed isolation** — quote frame sent by the simulator → opportunity detected (`detected_ns`), "
        f"feeds + detector + router in one daemon; loaded = {s['window']} order requests in flight "
        f"({s['loaded_requests_per_s']:,.0f} answered/s)",
        "",
        _row(("router", "dislocations → opportunities", "p50 ms", "p99 ms", "market write p99 ms")),
        _row(("---", "---:", "---:", "---:", "---:")),
    ]
    for phase in ("idle", "loaded"):
        f = s[phase]
        found = f"{f['dislocations']} → {f['events']}"
        lines.append(
            _row((phase, found, f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}", f"{f['write_p99_ms']:.2f}"))
        )
    lines += [
        "",
        _row(("ratio", "reached", "target")),
        _row(("---", "---:", "---:")),
        _row(("loaded/idle p99", f"{s['ratio']:.2f}", TARGETS["loaded/idle"])),
    ]
    return lines


def reaction_lines(s: Mapping[str, Any]) -> list[str]:
    """Return the reaction-time table and its stage breakdown."""
    lines = [
        f"**Reaction time** — opportunity detected → both arbitrage legs at the (paper) venue, "
        f"{s['arbitrages']} arbitrages filled on both venues (answers: {_counts(s['statuses'])}); "
        f"the client reads with fetch_max_wait_ms = {s['fetch_max_wait_ms']}; baseline: the same two Kafka "
        "hops with nothing in the middle",
        "",
        _row(("path", "p50 ms", "p99 ms", "target p99 ms")),
        _row(("---", "---:", "---:", "---:")),
    ]
    for key, label, target in (
        ("reaction", "reaction: detected → orders at the venue", TARGETS["reaction_p99_ms"]),
        ("router_part", "router's part: request taken → orders at the venue", TARGETS["router_part_p99_ms"]),
        ("kafka_round_trip", "baseline: two Kafka hops (produce → consume → produce → consume)", ""),
    ):
        f = s[key]
        lines.append(_row((label, f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}", target)))
    lines += ["", _row(("stage (reaction path)", "p50 ms", "p99 ms")), _row(("---", "---:", "---:"))]
    for stage, f in s["stages"].items():
        lines.append(_row((stage, f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}")))
    return lines


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def scaleout_lines(s: Mapping[str, Any]) -> list[str]:
    """Return the scale-out table: 1 vs 2 route processes in one group on Apache Kafka."""
    lines = [
        f"**Scale-out** — `smartroute route` processes in one consumer group on Apache Kafka, "
        f"one PostgreSQL ledger, {s['window']} paper orders in flight, {s['requests']} timed requests a run",
        "",
        _row(("routers", "requests/s", "p50 ms", "p99 ms", "router CPU (cores)")),
        _row(("---:", "---:", "---:", "---:", "---:")),
    ]
    for n in ("1", "2"):
        f = s[n]
        lines.append(_row((n, f"{f['requests_per_s']:,.0f}", f"{f['p50_ms']:.1f}", f"{f['p99_ms']:.1f}",
                           f"{f['router_cores']:.2f}")))  # fmt: skip
    lines += [
        "",
        _row(("ratio", "reached")),
        _row(("---", "---:")),
        _row(("2 routers / 1", f"{s['ratio']:.2f}")),
    ]
    return lines
