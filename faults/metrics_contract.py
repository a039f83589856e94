"""Scenario 13, the metrics contract: `/metrics` of a paper daemon parses and keeps its promises.

A daemon with every role (`smartroute run`: feeds, detector, router; paper mode) on the exchange
simulator's five venues and a broker on loopback, its HTTP port on. `/metrics` is scraped as
soon as it answers (the start), then after each of two equal rounds of order requests whose
user-supplied values (request and user ids, unknown symbols, odd quantities) are all fresh.

Figures, all hard but the last three: scrapes prometheus_client's text parser refused; series
the documentation names (README.md, deploy/INSTALL.md, deploy/METRICS.md) that the daemon does
not serve at start (those METRICS.md says appear later, in live mode or once a position exists,
are listed apart); served series the documentation never names; series named against
Prometheus' conventions (a unit that is not a base unit, a counter without `_total`, `_total`
on what is not a counter); label names or values that carry request data (the requests'
ids, user ids, symbols, quantities, venue names: all made up, all fresh); series the second
round of requests added (measured: a position on a venue that first filled in the second
round is one, bounded by the config); the most distinct values of one label of one series;
how many series were served.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from bench.transport import create_bench_topics
from connectors.registry import VENUES
from connectors.sim import ExchangeSimulator
from daemon.app import Daemon
from daemon.broker import free_port
from daemon.config import Config, build_config
from faults.orders import Requests
from faults.scenario import Context, Figure, Outcome, Scenario, measured, zero

REPO: Final = Path(__file__).resolve().parents[1]
SYMBOLS: Final = ("BTC-USDT", "ETH-USDT")
PREFIX: Final = "smartroute_"
DOCUMENTATION: Final = ("README.md", "deploy/INSTALL.md", "deploy/METRICS.md")  # where series are named
_NAME: Final = re.compile(r"smartroute_[a-z0-9_]*[a-z0-9]")
# Tokens of a metric name that are not base units (Prometheus: seconds, bytes, ratios, not ms or %).
NON_BASE_UNITS: Final = frozenset(
    {
        "ms",
        "millis",
        "milliseconds",
        "us",
        "micros",
        "microseconds",
        "ns",
        "nanos",
        "nanoseconds",
        "minutes",
        "hours",
        "days",
        "kb",
        "mb",
        "gb",
        "kib",
        "mib",
        "gib",
        "bits",
        "percent",
        "pct",
        "bps",
    }
)
# Label names that would carry one value per request, order or user.
REQUEST_LABELS: Final = frozenset(
    {"request_id", "user_id", "user", "client_order_id", "order_id", "opportunity_id", "id", "signer"}
)
METRICS_TABLE: Final = "deploy/METRICS.md"  # every series, and when it first appears
_ROW: Final = re.compile(r"^\| `(smartroute_[a-z0-9_]+)` \|[^|]*\|[^|]*\| ([^|]*?) \|", re.MULTILINE)
_START_TIMEOUT_S: Final = 60.0
_ANSWER_TIMEOUT_S: Final = 60.0


def documented_names(readme: str) -> set[str]:
    """Every `smartroute_*` series name the README mentions."""
    return set(_NAME.findall(readme))


def parse(text: str) -> dict[str, dict[str, Any]]:
    """Parse a scrape into {family: {"type", "samples": [(sample name, labels, value)], "bare"}}.

    Raises ValueError for text the parser refuses. The parser names every counter sample
    `<family>_total`, so `bare` records from the text itself whether the family served a sample
    under its own name (a counter without `_total`). The `_created` gauges prometheus_client adds
    beside each counter and histogram are left out.
    """
    raw_samples = {
        line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and line[0] != "#"
    }
    families: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        samples = [(s.name, dict(s.labels), s.value) for s in family.samples]
        families[family.name] = {"type": family.type, "samples": samples, "bare": family.name in raw_samples}
    created = [
        name for name in families if name.endswith("_created") and name.removesuffix("_created") in families
    ]
    return {name: family for name, family in families.items() if name not in created}


def later_series(table: str) -> dict[str, str]:
    """The series of the metrics table that do not appear at start, with when they do."""
    return {name: appears for name, appears in _ROW.findall(table) if appears != "start"}


def served_names(families: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Every family and sample name of a scrape with at least one sample (a counter: `<family>_total`)."""
    names = {name for name, family in families.items() if family["samples"]}
    for family in families.values():
        names.update(name for name, _, _ in family["samples"])
    return names


def undocumented_families(families: Mapping[str, Mapping[str, Any]], documented: set[str]) -> list[str]:
    """Our families (served with or without samples) that the documentation names in no form."""
    found = []
    for name, family in families.items():
        forms = {name, f"{name}_total"} | {sample for sample, _, _ in family["samples"]}
        if name.startswith(PREFIX) and not forms & documented:
            found.append(name)
    return sorted(found)


def badly_named(families: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Map each of our families named against Prometheus' conventions to what is wrong."""
    wrong: dict[str, str] = {}
    for name, family in families.items():
        if not name.startswith(PREFIX):
            continue
        if units := NON_BASE_UNITS.intersection(name.split("_")):
            wrong[name] = f"not a base unit: {', '.join(sorted(units))}"
        elif family["type"] == "counter" and family["bare"]:
            wrong[name] = "a counter not ending in _total"
        elif family["type"] != "counter" and name.endswith("_total"):
            wrong[name] = f"a {family['type']} ending in _total"
    return wrong


def label_values(families: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """Map (family, label name) to the distinct values it takes (histogram `le` left out)."""
    values: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for name, family in families.items():
        if name.startswith(PREFIX):
            for _, labels, _ in family["samples"]:
                for label, value in labels.items():
                    if label not in ("le", "quantile"):
                        values[(name, label)].add(value)
    return values


def series(families: Mapping[str, Mapping[str, Any]]) -> set[tuple[str, str]]:
    """Our series: (sample name, its labels as sorted JSON)."""
    return {
        (sample, orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode())
        for name, family in families.items()
        if name.startswith(PREFIX)
        for sample, labels, _ in family["samples"]
    }


def request_values(families: Mapping[str, Mapping[str, Any]], sent: set[str]) -> set[str]:
    """Our series whose label names or values come from requests (`sent`: every value we made up)."""
    found = set()
    for (name, label), values in label_values(families).items():
        if label in REQUEST_LABELS or values & sent:
            found.add(f"{name}{{{label}}}")
    return found


def requests_round(number: int, tag: str) -> tuple[list[bytes], set[str]]:
    """The same kinds of request each round, every made-up value fresh: (values, those values)."""
    made_up: set[str] = set()
    values = []
    for n in range(10):
        request_id, user = f"{tag}-r{number}-{n}", f"{tag}-u{number}-{n}"
        symbol = [SYMBOLS[n % 2], f"ZZ{number}{n}-USDT"][n % 5 == 4]
        quantity = ["0.001", "0.002", f"9{number}{n}.5", "-1", "0.0000000001"][n % 5]
        request: dict[str, Any] = {
            "v": 1,
            "request_id": request_id,
            "user_id": user,
            "kind": "order",
            "symbol": symbol,
            "side": ("buy", "sell")[n % 2],
            "quantity": quantity,
        }
        if n == 7:
            request["venues"] = [f"venue{tag}{number}"]
        made_up |= {request_id, user, symbol, quantity} - set(SYMBOLS)
        values.append(orjson.dumps(request))
    return values, made_up


def daemon_config(bootstrap: str, sim: ExchangeSimulator, workdir: Path, seed: int) -> Config:
    """A paper daemon with every role on the simulator's venues, its HTTP port on a free port."""
    tag = f"f{seed}x{free_port('127.0.0.1')}"
    raw: dict[str, Any] = {
        "daemon": {
            "http_port": free_port("127.0.0.1"),
            "state_dir": str(workdir / "state"),
            "log_level": "warning",
        },
        "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": f"faults{tag}."},
        "router": {"session_timeout_ms": 2000, "group_id": f"faults-router-{tag}"},
        "risk": {"max_orders_per_second": 1_000_000},
        "venues": {venue: {"symbols": list(SYMBOLS), "ws_url": sim.ws_url(venue)} for venue in VENUES},
    }
    return build_config(raw, {})


async def scrape(session: aiohttp.ClientSession, url: str) -> str:
    """GET /metrics once."""
    async with session.get(url) as response:
        response.raise_for_status()
        return await response.text()


async def first_scrape(session: aiohttp.ClientSession, url: str) -> str:
    """Scrape as soon as /metrics answers (the daemon's start)."""
    async with asyncio.timeout(_START_TIMEOUT_S):
        while True:
            try:
                return await scrape(session, url)
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.01)


async def run_scenario(context: Context) -> Outcome:
    """Start the daemon, scrape at start and after two rounds of requests; return the figures."""
    scrapes: list[str] = []
    async with (
        context.kafka() as bootstrap,
        ExchangeSimulator(tuple(VENUES), SYMBOLS, seed=context.seed) as sim,
    ):
        cfg = daemon_config(bootstrap, sim, context.workdir, context.seed)
        await create_bench_topics(cfg)
        daemon, stop = Daemon(cfg), asyncio.Event()
        running = asyncio.create_task(daemon.run(stop), name="faults-metrics-daemon")
        url = f"http://127.0.0.1:{cfg.daemon.http_port}/metrics"
        made_up: set[str] = set()
        try:
            async with aiohttp.ClientSession() as session:
                scrapes.append(await first_scrape(session, url))
                assert daemon.router_service is not None
                async with asyncio.timeout(_START_TIMEOUT_S):
                    await daemon.router_service.reconciled.wait()
                async with Requests(cfg) as client:
                    for number in (1, 2):
                        values, values_made_up = requests_round(number, f"s{context.seed}")
                        made_up |= values_made_up
                        await client.send(values)
                        ids = {str(orjson.loads(value)["request_id"]) for value in values}
                        await client.wait_for(ids, _ANSWER_TIMEOUT_S)
                        scrapes.append(await scrape(session, url))
        finally:
            stop.set()
            await running
    docs = "\n".join((REPO / name).read_text(encoding="utf-8") for name in DOCUMENTATION)
    later = later_series((REPO / METRICS_TABLE).read_text(encoding="utf-8"))
    return analyse(scrapes, made_up, documented_names(docs), later)


def analyse(scrapes: list[str], made_up: set[str], documented: set[str], later: dict[str, str]) -> Outcome:
    """Turn the start scrape and one scrape after each round of requests into the figures."""
    parsed: list[dict[str, dict[str, Any]]] = []
    parse_errors: list[str] = []
    for text in scrapes:
        try:
            parsed.append(parse(text))
        except ValueError as exc:
            parse_errors.append(str(exc))
    if parse_errors:
        return Outcome(
            [zero("parse_errors", "scrapes the text parser refused", len(parse_errors))],
            size={"scrapes": len(scrapes)},
            details={"parse_errors": parse_errors},
        )
    start, first, second = parsed
    missing = sorted(name for name in documented - served_names(start) if name not in later)
    ours = {name for name in served_names(second) if name.startswith(PREFIX)}
    undocumented = undocumented_families(second, documented)
    wrong = {name: why for scrape in parsed for name, why in badly_named(scrape).items()}
    leaked = sorted(request_values(second, made_up))
    added = sorted(f"{name} {labels}" for name, labels in series(second) - series(first))
    cardinality = {
        f"{name}{{{label}}}": len(values) for (name, label), values in label_values(second).items()
    }
    widest = max(cardinality.items(), key=lambda item: item[1], default=("", 0))
    figures: list[Figure] = [
        zero("parse_errors", "scrapes the text parser refused", 0),
        zero("missing_at_start", "documented series not served at start", len(missing)),
        zero("badly_named", "series against the naming conventions", len(wrong)),
        zero("request_labels", "labels carrying request data", len(leaked)),
        zero("undocumented", "served series the documentation never names", len(undocumented)),
        measured("series_added", "series the second round of requests added", len(added)),
        measured("max_label_values", f"most values of one label ({widest[0]})", widest[1]),
        measured("series", "smartroute series served after the requests", len(series(second))),
    ]
    details = {
        "missing_at_start": missing,
        "not_at_start": later,
        "undocumented": undocumented,
        "badly_named": wrong,
        "request_labels": leaked,
        "series_added": added,
        "label_values": dict(sorted(cardinality.items(), key=lambda item: -item[1])),
        "documented": sorted(documented),
        "families_served": len(ours),
    }
    return Outcome(
        figures, size={"scrapes": len(scrapes), "requests": 20, "venues": len(VENUES)}, details=details
    )


def _limit(context: Context) -> float:
    return 180.0


SCENARIO: Final = Scenario(13, "metrics_contract", "Metrics contract", run_scenario, _limit)
