"""Hypothesis strategies of venue frames: documented frames mutated, and frames made from nothing.

`mutated(frame)` parses a documented frame and applies one to three edits at seeded places:
a value replaced by any JSON value (or by one of the edge cases below), a key or item removed,
an item repeated, a key added; then, sometimes, the bytes are cut short or one byte changed.
`random_frame()` draws bytes, text or JSON of any shape.
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson
from hypothesis import strategies as st

# Values that break careless number and text handling.
EDGE_VALUES: Final[tuple[Any, ...]] = (
    "",
    "0",
    "-0",
    "1e999",
    "-1e999",
    "NaN",
    "nan",
    "Infinity",
    "-1",
    "0.00000001",
    "1e-30",
    "99999999999999999999999999999999",
    " 1",
    "1 ",
    "1,5",
    "0x10",
    "١",
    "１",
    0,
    -1,
    2**63,
    -(2**63) - 1,
    1.5,
    1e308,
    True,
    None,
    [],
    {},
)
_LEAVES: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=24),
    st.sampled_from(EDGE_VALUES),
)
JSON_VALUES: Final = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def dumps(document: Any) -> bytes:
    """JSON bytes of any document, integers beyond 64 bits included (orjson refuses those)."""
    return json.dumps(document, ensure_ascii=False).encode()


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document, the root included."""
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*path, index))
    return found


def _edit(document: Any, path: tuple[Any, ...], how: str, new: Any) -> Any:
    """Return `document` with the value at `path` replaced, removed, repeated, or given a new key."""
    if not path:
        return new if how == "replace" else document
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = new
    elif how == "remove":
        del parent[last]
    elif how == "repeat" and isinstance(parent, list):
        parent.insert(last, parent[last])
    elif how == "add_key" and isinstance(parent, dict):
        parent[f"{last}_"] = new
    return document


@st.composite
def mutated(draw: st.DrawFn, frame: bytes) -> bytes:
    """A documented frame with one to three seeded edits, sometimes then cut short or with a byte changed."""
    try:
        document = orjson.loads(frame)
    except orjson.JSONDecodeError:
        document = None
    if document is not None:
        for _ in range(draw(st.integers(1, 3))):
            paths = _paths(document)
            path = paths[draw(st.integers(0, len(paths) - 1))]
            how = draw(st.sampled_from(("replace", "replace", "remove", "repeat", "add_key")))
            document = _edit(document, path, how, draw(JSON_VALUES))
        frame = dumps(document)
    damage = draw(st.sampled_from(("none", "none", "none", "cut", "byte")))
    if damage == "cut" and frame:
        frame = frame[: draw(st.integers(0, len(frame) - 1))]
    elif damage == "byte" and frame:
        at = draw(st.integers(0, len(frame) - 1))
        frame = frame[:at] + bytes([draw(st.integers(0, 255))]) + frame[at + 1 :]
    return frame


def random_frame() -> st.SearchStrategy[bytes | str]:
    """Bytes, text, or any JSON document."""
    return st.one_of(st.binary(max_size=512), st.text(max_size=512), JSON_VALUES.map(dumps))
