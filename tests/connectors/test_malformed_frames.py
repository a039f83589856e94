"""A frame whose fields have the wrong JSON type is a ParseError for every parser, never a crash.

Found by the fault suite's parser fuzzing (faults/fuzzing.py): `{"op": {}}` (Bybit),
`{"event": {}}` (OKX) and `{"channel": []}` (Kraken) raised TypeError (an unhashable value looked
up in a set), which ended the StreamRunner and with it the daemon. Here every field of every
recorded frame, at the top and one level down, is replaced in turn by an object and by a list.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import ParseError, ReconnectRequested
from connectors.registry import VENUES, build_adapter

FRAMES_DIR = Path(__file__).parent / "frames"
SYMBOLS = ("BTC-USDT", "ETH-USDT", "BTC-USD", "BNB-USDT", "ALGO-USD", "MATIC-USD")
RECEIVED_NS = 1_732_400_000_000_000_000


def recorded(venue: str) -> list[Any]:
    frames: list[Any] = []
    for path in sorted((FRAMES_DIR / venue).glob("*.json*")):
        if path.name in ("contract.json", "test-vectors.json"):
            continue
        texts = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
        frames += [json.loads(text) for text in texts if text.strip()]
    return [frame for frame in frames if isinstance(frame, dict)]


def wrong_types(frame: dict[str, Any]) -> Iterator[str]:
    """The frame with each field (top level, and one level down in objects) an object, then a list."""
    for key, value in frame.items():
        for wrong in ({}, []):
            yield json.dumps(frame | {key: wrong})
        if isinstance(value, dict):
            for inner in value:
                for wrong in ({}, []):
                    yield json.dumps(frame | {key: value | {inner: wrong}})


@pytest.mark.parametrize("depth", [None, 10])
@pytest.mark.parametrize("venue", sorted(VENUES))
def test_a_field_of_the_wrong_type_is_a_parse_error(venue: str, depth: int | None) -> None:
    adapter = build_adapter(venue, SYMBOLS, depth=depth)
    tried = 0
    for frame in recorded(venue):
        for text in wrong_types(frame):
            parser = adapter.new_parser()
            with contextlib.suppress(ParseError, ReconnectRequested):  # anything else fails the test
                parser.parse(text, RECEIVED_NS)
            tried += 1
    assert tried > 20
