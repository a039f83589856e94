"""The fake venue REST servers of the integration tests, for the scenarios that drive trading clients.

The fakes (`tests/integration/fake_*.py`) enforce each venue's real rules (signatures, recvWindow,
rate limits, Retry-After, bans) and log every request with its time; they import each other as
top-level modules, as pytest puts their folder on the path. `fake(name)` does the same and
returns the module (typed `Any`: the tests are not a package mypy checks).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Final

FAKES_DIR: Final = Path(__file__).resolve().parents[1] / "tests" / "integration"


def fake(name: str) -> Any:
    """Import and return `tests/integration/<name>.py` (e.g. "fake_binance"), its folder on the path."""
    folder = str(FAKES_DIR)
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module(name)
