"""Secrets: a string that never prints, read from the environment or a systemd credential file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from daemon.errors import ConfigError


class Secret:
    """A secret string that never appears in `repr`, `str` or formatting; `reveal()` where it is used."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret's value, to hand it to the client that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def load_secret(env_var: str, credential: str, environ: Mapping[str, str]) -> Secret | None:
    """Return a secret from `env_var`, else `$CREDENTIALS_DIRECTORY/<credential>`; None if neither is set."""
    value = environ.get(env_var)
    if value is not None:
        if not value:
            raise ConfigError(f"{env_var} (environment): is set but empty")
        return Secret(value)
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / credential
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read credential {path}: {exc}") from exc
    text = text.removesuffix("\n").removesuffix("\r")  # files written by hand end with a newline
    if not text:
        raise ConfigError(f"credential {path} is empty")
    return Secret(text)
