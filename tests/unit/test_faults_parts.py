"""The fault suite's instruments see the faults they count: each check is shown a fault and finds it.

The small runs (tests/integration/test_faults_small.py) show the product passing these checks;
here each check is fed a fault made by hand, so that a passing run cannot be a blind one.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.binance.ratelimit import RateLimiter
from connectors.errors import ParseError
from faults.clock_skew import outside
from faults.fuzzing import Findings, documented_frames
from faults.metrics_contract import (
    badly_named,
    documented_names,
    later_series,
    parse,
    request_values,
    undocumented_families,
)
from faults.mutations import mutated
from faults.rate_limits import ORDER, watching
from faults.redelivery import differing
from faults.report import markdown
from faults.run import free_stem
from faults.scenario import below, measured, zero
from faults.stale_prices import FROZEN, MAX_QUOTE_AGE_MS, over_age_decisions, over_age_opportunities

SCRAPE = """# HELP smartroute_fine_total A counter.
# TYPE smartroute_fine_total counter
smartroute_fine_total{venue="binance"} 0.0
# HELP smartroute_leg_ms A timing in milliseconds.
# TYPE smartroute_leg_ms gauge
smartroute_leg_ms 1.0
# HELP smartroute_orders A counter named without _total.
# TYPE smartroute_orders counter
smartroute_orders 3.0
# HELP smartroute_open_total A gauge named like a counter.
# TYPE smartroute_open_total gauge
smartroute_open_total{request_id="r-1"} 2.0
# HELP smartroute_by_user_total Answers by user.
# TYPE smartroute_by_user_total counter
smartroute_by_user_total{who="alice-7"} 1.0
"""


def test_the_metrics_checks_find_bad_units_counters_without_total_and_request_labels() -> None:
    families = parse(SCRAPE)
    assert badly_named(families) == {
        "smartroute_leg_ms": "not a base unit: ms",
        "smartroute_orders": "a counter not ending in _total",
        "smartroute_open_total": "a gauge ending in _total",
    }
    leaked = request_values(families, {"alice-7"})
    assert leaked == {"smartroute_open_total{request_id}", "smartroute_by_user{who}"}


def test_a_scrape_the_text_parser_refuses_is_an_error_and_docs_name_series() -> None:
    with pytest.raises(ValueError):
        parse("smartroute_x{venue=binance} 1\n")
    assert documented_names("counts `smartroute_a_total{venue}` and smartroute_b_seconds.") == {
        "smartroute_a_total",
        "smartroute_b_seconds",
    }


def test_a_replayed_result_unlike_the_first_is_counted() -> None:
    first = {"a": {"status": "filled"}, "b": {"status": "filled"}}
    results = {
        "a": [{"status": "filled"}, {"status": "filled"}],
        "b": [{"status": "filled"}, {"status": "rejected"}],
    }
    assert differing(first, results) == ["b"]


def test_fuzzing_sorts_documented_parse_errors_from_any_other_exception() -> None:
    findings = Findings()

    def parse_error() -> None:
        raise ParseError("not a frame")

    def key_error() -> None:
        raise KeyError("b")

    findings.feed(parse_error, b"{}", timed=True)
    findings.feed(key_error, b'{"a": 1}', timed=True)
    findings.feed(lambda: [], b"[]", timed=False)
    assert findings.documented_errors == 1 and findings.inputs == 2
    (found,) = findings.unexpected.values()
    assert found["count"] == 1 and found["frame"] == '{"a": 1}' and "KeyError" in found["error"]


@settings(max_examples=30, database=None)
@given(st.data())
def test_a_mutated_documented_frame_is_bytes(data: st.DataObject) -> None:
    frames = documented_frames("binance")
    assert frames
    assert isinstance(data.draw(mutated(frames[0])), bytes)


def _result(venue: str, received_ns: int, age_ms: float) -> dict[str, Any]:
    return {
        "received_ns": received_ns,
        "fills": [{"venue": venue}],
        "route": {"legs": [{"venue": venue}], "considered": [{"venue": venue, "quote_age_ms": age_ms}]},
    }


def test_a_decision_or_opportunity_on_the_frozen_venue_past_max_quote_age_is_counted() -> None:
    last_ns, limit_ns = 10**18, MAX_QUOTE_AGE_MS * 1_000_000
    results = [
        _result(FROZEN, last_ns + limit_ns - 1, 10.0),  # within the age
        _result(FROZEN, last_ns + limit_ns + 1, 10.0),  # received past it
        _result(FROZEN, last_ns, MAX_QUOTE_AGE_MS + 1),  # reported over age
        _result("binance", last_ns + 5 * limit_ns, 0.0),  # another venue
    ]
    assert over_age_decisions(results, last_ns) == results[1:3]
    events = [
        {
            "event": "updated",
            "buy_venue": FROZEN,
            "sell_venue": "binance",
            "detected_ns": last_ns + limit_ns + 1,
        },
        {
            "event": "closed",
            "buy_venue": FROZEN,
            "sell_venue": "binance",
            "detected_ns": last_ns + limit_ns + 1,
        },
        {
            "event": "opened",
            "buy_venue": "binance",
            "sell_venue": FROZEN,
            "detected_ns": last_ns,
            "sell_quote_age_ms": MAX_QUOTE_AGE_MS + 1,
        },
    ]
    assert over_age_opportunities(events, last_ns) == [events[0], events[2]]


def test_the_table_shows_a_missed_target_as_missed_and_a_failed_scenario_as_not_completed() -> None:
    figures = [
        zero("dupes", "duplicates", 2),
        below("slow", "slowest", 5.0, 100, "ms"),
        measured("n", "inputs", 7),
    ]
    scenario = {
        "number": 2,
        "title": "Redelivery",
        "seconds": 1.0,
        "brokers": ["tansu"],
        "size": {"requests": 5},
        "figures": [asdict(f) for f in figures],
    }
    results = {
        "date": "2026-12-08",
        "mode": "small",
        "seed": 1,
        "machine": {
            "cpu": "x",
            "cores": 2,
            "python": "3.11",
            "smartroute_commit": "abc",
            "load_average_1m": 1.0,
        },
        "scenarios": {
            "redelivery": scenario,
            "fuzzing": {"number": 8, "title": "Parser fuzzing", "error": "timed out after 60 s"},
        },
    }
    table = markdown(results)
    assert "| duplicates | 2 | 0 | **missed** |" in table
    assert "| slowest | 5 ms | < 100 ms | met |" in table
    assert "| inputs | 7 |  |  |" in table
    assert "**did not complete**: timed out after 60 s" in table


def test_a_days_later_run_never_overwrites_an_earlier_one(tmp_path: Path) -> None:
    assert free_stem(tmp_path, "2026-12-08") == "2026-12-08"
    (tmp_path / "2026-12-08.json").write_text("{}")
    assert free_stem(tmp_path, "2026-12-08") == "2026-12-08-2"
    (tmp_path / "2026-12-08-2.md").write_text("")
    assert free_stem(tmp_path, "2026-12-08") == "2026-12-08-3"


def test_the_metrics_table_says_which_series_appear_later_and_any_unnamed_family_is_found() -> None:
    table = (
        "| `smartroute_a_total` | counter | `venue` | start | A. |\n"
        "| `smartroute_b` | gauge | `venue` | live mode only | B. |\n"
    )
    assert later_series(table) == {"smartroute_b": "live mode only"}
    families = parse(SCRAPE)
    assert undocumented_families(
        families, {"smartroute_fine_total", "smartroute_leg_ms", "smartroute_orders"}
    ) == [
        "smartroute_by_user",
        "smartroute_open_total",
    ]


async def test_an_order_sent_after_its_client_read_a_429_is_early_and_one_sent_before_is_excused() -> None:
    now = [100.0]

    async def no_sleep(_: float) -> None:
        return None

    limiter = watching(RateLimiter)("test-watching", clock=lambda: now[0], sleep=no_sleep)
    for order in ("a", "b"):  # both leave before any answer
        ORDER.set(order)
        await limiter.acquire(1, orders=1, max_wait_s=1.0)
    ORDER.set("a")
    limiter.observe(429, {"Retry-After": "7"})  # the client reads a's 429
    assert limiter.sent_before_reading("a", "b") and limiter.early == []
    now[0] += 6.0  # still within the 7 s
    ORDER.set("c")
    limiter._backoff_until = 0.0  # a limiter that forgot the Retry-After lets c go
    await limiter.acquire(1, orders=1, max_wait_s=1.0)
    assert limiter.early == ["c"] and not limiter.sent_before_reading("a", "c")


def test_a_timestamp_outside_the_recv_window_of_the_venues_clock_then_is_counted() -> None:
    def seen(at_s: float, stamp_ms: int) -> SimpleNamespace:
        return SimpleNamespace(time=at_s, params={"timestamp": str(stamp_ms), "recvWindow": "5000"})

    assert not outside(seen(1000.0, 1_000_000), 0)
    assert not outside(seen(1000.0, 1_000_000), 3000)  # the venue 3 s ahead: within 5 s
    assert outside(seen(1000.0, 1_000_000), -3000)  # the venue behind: our stamp is from its future
    assert outside(seen(1000.0, 1_000_000), 10_000)  # 10 s old on the venue's clock
