"""The bench's own arithmetic: linking opportunities to the quotes that opened them, phases, sizes.

No timing is asserted: these check that the instruments attribute each sample to the right
dislocation and phase, and that the bare loop's answers are as long as the router's.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal

import orjson
import pytest

from bench.isolation import opened_at, phase_figures
from bench.market import dislocated_bid, dislocation_number
from bench.scaleout import cpu_seconds
from bench.transport import _bare_result, percentiles_ms


@pytest.mark.parametrize("number", [0, 1, 2, 99, 100, 1234, 49_999])
def test_an_opportunitys_sell_price_names_the_dislocation_that_opened_it(number: int) -> None:
    bid = dislocated_bid(number)
    assert dislocation_number(str(bid)) == number
    assert dislocation_number(f"{bid:.4f}") == number  # a VWAP published with more decimals
    assert dislocation_number(str(bid + Decimal("0.004"))) == number  # rounding never moves it


def _event(event: str, symbol: str, number: int, detected_ns: int) -> bytes:
    price = str(dislocated_bid(number))
    return orjson.dumps({"event": event, "symbol": symbol, "sell_price": price, "detected_ns": detected_ns})


def test_only_the_first_opened_eth_event_of_each_dislocation_is_timed() -> None:
    values = [
        _event("opened", "ETH-USDT", 3, 100),
        _event("updated", "ETH-USDT", 3, 150),
        _event("closed", "ETH-USDT", 3, 200),
        _event("opened", "ETH-USDT", 3, 300),  # reopened later: not this dislocation's first detection
        _event("opened", "BTC-USDT", 4, 400),
        _event("opened", "ETH-USDT", 5, 500),
    ]
    assert opened_at(values) == {3: 100, 5: 500}


def test_a_dislocation_counts_in_the_phase_its_quote_was_sent_in() -> None:
    records = [{"n": n, "sent_ns": n * 1_000_000, "written_ns": n * 1_000_000 + 1000} for n in range(10)]
    detected = {n: n * 1_000_000 + (n + 1) * 1_000_000 for n in range(10) if n != 7}  # 7 was never found
    figures = phase_figures(records, detected, 5_000_000, 9_000_000)
    assert figures["dislocations"] == 4 and figures["events"] == 3  # 5, 6, 8 (7 missing); 9 is outside
    assert figures["p50_ms"] == pytest.approx(7.0) and figures["p99_ms"] == pytest.approx(8.96)
    assert figures["write_p99_ms"] == pytest.approx(0.001)


def test_percentiles_need_two_samples() -> None:
    assert percentiles_ms([1_000_000, 3_000_000]) == {"p50_ms": 2.0, "p99_ms": pytest.approx(2.98)}
    with pytest.raises(RuntimeError, match="only 1 samples"):
        percentiles_ms([1])


@pytest.mark.parametrize("size", [200, 1100, 1185])
def test_the_bare_loops_answer_is_as_long_as_asked_and_names_the_request(size: int) -> None:
    result = _bare_result(b"b1234abcd-17", size)
    assert len(result) == size
    parsed = orjson.loads(result)
    assert parsed["request_id"] == "b1234abcd-17" and parsed["status"] == "filled"


def test_cpu_seconds_reads_this_process() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) > before
