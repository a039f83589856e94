"""Typed, validating reads of one TOML table; every error names the full dotted key (and its variable)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from daemon.errors import ConfigError

T = TypeVar("T", bound=str)


@dataclass(frozen=True, slots=True)
class EnvOrigin:
    """Where a key's value came from when a SMARTROUTE_* variable set it."""

    variable: str
    text: str  # the raw value, used as-is where a string is expected


def config_error(key: str, message: str, origins: Mapping[str, EnvOrigin]) -> ConfigError:
    """Build the error for `key`, naming the environment variable that set it, if one did."""
    origin = origins.get(key)
    text = f"{key}: {message}"
    return ConfigError(f"{origin.variable} (environment) → {text}" if origin else text)


def show(value: object) -> str:
    """Render a config value the way it would be written in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "a table"
    return str(value)


def to_decimal(value: object) -> Decimal | None:
    """Convert a TOML number or numeric string to a finite Decimal; None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


class Table:
    """Typed, validating reads of one TOML table; every error names the full dotted key."""

    __slots__ = ("_data", "_origins", "_path", "_seen")

    def __init__(self, data: Mapping[str, object], path: str, origins: Mapping[str, EnvOrigin]) -> None:
        self._data = data
        self._path = path
        self._origins = origins
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        """Return the dotted key of `name` in this table."""
        return f"{self._path}.{name}" if self._path else name

    def error(self, name: str, message: str) -> ConfigError:
        """Build the error for `name` in this table."""
        return config_error(self.key(name), message, self._origins)

    def names(self) -> Iterator[str]:
        """Iterate over the keys present in this table."""
        return iter(self._data)

    def has(self, name: str) -> bool:
        """Tell whether `name` is set (a None value counts as unset)."""
        return self._data.get(name) is not None

    def value(self, name: str) -> object:
        """Return the raw value of `name` (None if unset) and mark it as read."""
        self._seen.add(name)
        return self._data.get(name)

    def table(self, name: str) -> Table:
        """Return the sub-table `name` (empty if unset)."""
        raw = self.value(name)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise self.error(name, f"must be a table, got {show(raw)}")
        return Table(raw, self.key(name), self._origins)

    def finish(self) -> None:
        """Raise for the first key of this table that no reader asked for."""
        for name in sorted(set(self._data) - self._seen):
            if self._data[name] is not None:  # None means unset (JSON data such as `redacted_view` output)
                raise self.error(name, "unknown key")

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        """Read an integer within [minimum, maximum]; booleans are not integers."""
        raw = self.value(name)
        if raw is None:
            return default
        in_range = isinstance(raw, int) and raw >= minimum and (maximum is None or raw <= maximum)
        if in_range and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if minimum == 1 and maximum is None:
            expected = "a positive integer"
        elif maximum is None:
            expected = f"an integer ≥ {minimum}"
        else:
            expected = f"an integer from {minimum} to {maximum}"
        raise self.error(name, f"must be {expected}, got {show(raw)}")

    def optional_decimal(self, name: str, *, minimum: Decimal, strict: bool) -> Decimal | None:
        """Read a decimal (TOML number or string) that must be ≥ minimum, or > minimum when strict."""
        raw = self.value(name)
        if raw is None:
            return None
        number = to_decimal(raw)
        if number is None or number < minimum or (strict and number == minimum):
            bound = f"{'>' if strict else '≥'} {minimum}"
            expected = f"a finite decimal number {bound} (TOML number or string)"
            raise self.error(name, f"must be {expected}, got {show(raw)}")
        return number

    def decimal(self, name: str, default: Decimal, *, minimum: Decimal, strict: bool = False) -> Decimal:
        """Read a decimal like `optional_decimal`, with a default."""
        number = self.optional_decimal(name, minimum=minimum, strict=strict)
        return default if number is None else number

    def boolean(self, name: str, default: bool) -> bool:
        """Read true or false."""
        raw = self.value(name)
        if raw is None:
            return default
        if not isinstance(raw, bool):
            raise self.error(name, f"must be true or false, got {show(raw)}")
        return raw

    def text(self, name: str) -> object:
        """Return the raw value of `name`, or the SMARTROUTE_* text that set it to a non-string."""
        raw = self.value(name)
        origin = self._origins.get(self.key(name))
        if raw is not None and not isinstance(raw, str) and origin is not None:
            return origin.text  # `SMARTROUTE_KAFKA__CLIENT_ID=123` means the string "123"
        return raw

    def optional_string(self, name: str) -> str | None:
        """Read a non-empty string."""
        raw = self.text(name)
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw.strip():
            raise self.error(name, f"must be a non-empty string, got {show(raw)}")
        return raw

    def string(self, name: str, default: str) -> str:
        """Read a non-empty string, with a default."""
        text = self.optional_string(name)
        return default if text is None else text

    def choice(self, name: str, choices: tuple[T, ...], default: T) -> T:
        """Read one of `choices`."""
        found = self.optional_choice(name, choices)
        return default if found is None else found

    def optional_choice(self, name: str, choices: tuple[T, ...]) -> T | None:
        """Read one of `choices`, or None when unset."""
        raw = self.value(name)
        if raw is None:
            return None
        for option in choices:
            if raw == option:
                return option
        raise self.error(name, f"must be one of {', '.join(show(c) for c in choices)}, got {show(raw)}")

    def string_list(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Read a list of strings without duplicates."""
        raw = self.value(name)
        if raw is None:
            return default
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise self.error(name, f"must be a list of strings, got {show(raw)}")
        items: list[str] = raw
        duplicates = sorted({item for item in items if items.count(item) > 1})
        if duplicates:
            raise self.error(name, f"must not repeat an entry, got {show(duplicates)} more than once")
        return tuple(items)
