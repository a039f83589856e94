"""The fault suite's scenarios, in the order they run: one module each, its `SCENARIO` listed here.

Adding a scenario: a module `faults/<name>.py` whose `SCENARIO = Scenario(number, name, title,
run, time_limit_s)` runs it (see `faults.scenario`), one line below, its test in
`tests/integration/test_faults_small.py` and its section in `faults/README.md`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from faults import (
    churn,
    clock_skew,
    crashes,
    fuzzing,
    metrics_contract,
    rate_limits,
    redelivery,
    stale_prices,
)

SCENARIOS: Final = MappingProxyType(
    {
        scenario.name: scenario
        for scenario in (
            metrics_contract.SCENARIO,
            crashes.SCENARIO,
            redelivery.SCENARIO,
            fuzzing.SCENARIO,
            stale_prices.SCENARIO,
            # scenarios 9 and 10: trading clients against the fake venues' limits and clocks
            rate_limits.SCENARIO,
            clock_skew.SCENARIO,
            churn.SCENARIO,
        )
    }
)
