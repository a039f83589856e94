"""`[security]` and `[operators.<id>]`: who may sign orders, preferences and control, and how strictly.

    [security]
    require_signatures = true        # default: true in live mode, false in paper mode
    max_message_age_ms = 60000       # control and preferences: how old a signed `issued_ns` may be

    [operators.alice-ops]
    public_keys = ["<base64 of the raw 32-byte Ed25519 public key>"]

Users' keys and entitlements live in their `[users.<id>]` sections (`daemon.config.users`).
A public key that is not a valid Ed25519 key refuses the start, naming the key's place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from daemon.config.table import Table
from daemon.config.users import USER_ID_RE, public_key_list

MAX_MESSAGE_AGE_LIMIT_MS: Final = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """`[security]`: whether input messages must be signed, and the freshness window of signed settings."""

    require_signatures: bool | None = None  # None: the mode decides (live → true, paper → false)
    max_message_age_ms: int = 60_000

    def signatures_required(self, mode: str) -> bool:
        """Return whether signatures are required in `mode` (an explicit setting wins)."""
        return mode == "live" if self.require_signatures is None else self.require_signatures


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    """`[operators.<id>]`: a principal that may halt, resume and change anyone's preferences."""

    operator_id: str
    public_keys: tuple[str, ...] = ()


def no_operators() -> Mapping[str, OperatorConfig]:
    """Return the operators of a config without `[operators]`: none."""
    return MappingProxyType({})


def read_security(t: Table) -> SecurityConfig:
    """Validate the `[security]` table."""
    d = SecurityConfig()
    required = t.boolean("require_signatures", False) if t.has("require_signatures") else None
    cfg = SecurityConfig(
        require_signatures=required,
        max_message_age_ms=t.integer(
            "max_message_age_ms", d.max_message_age_ms, minimum=1000, maximum=MAX_MESSAGE_AGE_LIMIT_MS
        ),
    )
    t.finish()
    return cfg


def read_operators(t: Table) -> Mapping[str, OperatorConfig]:
    """Validate the `[operators]` table: one `[operators.<id>]` section per operator, each with a key."""
    operators = {}
    for operator_id in sorted(t.names()):
        if not USER_ID_RE.fullmatch(operator_id):
            raise t.error(operator_id, "an operator id is 1 to 64 characters of A-Z a-z 0-9 . _ : -")
        section = t.table(operator_id)
        keys = public_key_list(section)
        if not keys:
            raise section.error("public_keys", "an operator needs at least one public key")
        section.finish()
        operators[operator_id] = OperatorConfig(operator_id, keys)
    return MappingProxyType(operators)
