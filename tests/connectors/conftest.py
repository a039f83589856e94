"""Recorded venue frames for the connector tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

FRAMES_DIR = Path(__file__).parent / "frames"


class RecordedFrames:
    """Read the recorded frames under `tests/connectors/frames/<venue>/`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def text(self, venue: str, name: str) -> str:
        """Return a recorded file's text exactly as stored."""
        return (self.root / venue / name).read_text(encoding="utf-8")

    def lines(self, venue: str, name: str) -> list[str]:
        """Return the non-empty lines of a recorded `.jsonl` file."""
        return [line for line in self.text(venue, name).splitlines() if line.strip()]

    def json(self, venue: str, name: str) -> Any:
        """Return a recorded `.json` file decoded."""
        return orjson.loads(self.text(venue, name))


@pytest.fixture
def recorded() -> RecordedFrames:
    """Return the reader of recorded frames."""
    return RecordedFrames(FRAMES_DIR)


@pytest.fixture
def received_ns() -> int:
    """Return a fixed local receive time, as the runner would pass it."""
    return 1_732_400_000_123_456_789
