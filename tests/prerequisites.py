"""What a test does when a tool it needs is not installed: skip on a workstation, fail in CI.

    from prerequisites import unavailable
    if shutil.which("promtool") is None:
        unavailable("promtool is not installed; `apt-get install -y prometheus` (.ci/run does this)")

CI (the environment variable CI set to a true value, as `.ci/run` and every CI service do)
installs every tool the suite uses, so a missing one there is a broken machine, never a reason
to pass with less tested.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from daemon.postgres_server import NOT_INSTALLED

_TRUE = frozenset({"1", "true", "yes", "on"})
NO_POSTGRES = f"postgres tests skipped: {NOT_INSTALLED} (or bash .ci/run)"


def in_ci() -> bool:
    """Return True when running in CI (CI=true, 1, yes or on)."""
    return os.environ.get("CI", "").strip().lower() in _TRUE


def unavailable(reason: str) -> NoReturn:
    """Skip the test with `reason`, or fail it with `reason` in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: a missing prerequisite is a failure, not a skip)")
    pytest.skip(reason)
