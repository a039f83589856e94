"""The Kafka contract's JSON Schemas (schemas/ at the top of the repo), for tests.

    from contract import assert_valid
    assert_valid("opportunity", orjson.loads(record.value))

Message names are the schema file stems: quote, quote-withdrawn, opportunity, order-request,
execution-result, preferences, control, dlq-entry. Schemas reference each other
by file name (`common.schema.json#/$defs/...`); one `referencing` registry holds
every file under that name, so those references resolve without any network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_DIR: Final = Path(__file__).resolve().parents[1] / "schemas"
MESSAGES: Final = (
    "quote",
    "quote-withdrawn",
    "opportunity",
    "order-request",
    "execution-result",
    "preferences",
    "control",
    "dlq-entry",
)
SUFFIX: Final = ".schema.json"


def schema_files() -> list[Path]:
    """Return every schema file under schemas/, messages and shared definitions alike."""
    return sorted(SCHEMA_DIR.glob(f"*{SUFFIX}"))


def load_schema(name: str) -> dict[str, Any]:
    """Return the parsed schema of message `name` (a file stem, e.g. "order-request")."""
    if name not in MESSAGES:
        raise KeyError(f"no message named {name!r}; known: {', '.join(MESSAGES)}")
    return _documents()[name + SUFFIX]


@cache
def _documents() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in schema_files()}


@cache
def registry() -> Registry[Any]:
    """Return a registry holding every schema file under its file name, for `$ref` between files."""
    resources = [
        (file_name, Resource.from_contents(contents, default_specification=DRAFT202012))
        for file_name, contents in _documents().items()
    ]
    return Registry().with_resources(resources).crawl()


@cache
def validator(name: str) -> Draft202012Validator:
    """Return a draft 2020-12 validator of message `name` that resolves references through `registry()`."""
    return Draft202012Validator(load_schema(name), registry=registry())


def errors(name: str, message: object) -> list[str]:
    """Return one line per way `message` breaks the schema of `name` (empty when it is valid)."""
    found = sorted(validator(name).iter_errors(message), key=lambda error: list(error.absolute_path))
    return [f"{error.json_path}: {error.message}" for error in found]


def is_valid(name: str, message: object) -> bool:
    """Return whether `message` (a decoded JSON document) satisfies the schema of `name`."""
    return bool(validator(name).is_valid(message))


def assert_valid(message_name: str, message: Mapping[str, object]) -> None:
    """Fail with every violation listed unless `message` satisfies the schema of `message_name`."""
    problems = errors(message_name, message)
    if problems:
        listed = "\n  ".join(problems)
        raise AssertionError(f"{message_name} message breaks schemas/{message_name}{SUFFIX}:\n  {listed}")
