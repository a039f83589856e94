"""The printed view of the effective config (`smartroute config`), generated from `Config`'s own fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.config.model import Config
from daemon.config.secret import Secret

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def redacted_view(cfg: Config) -> dict[str, object]:
    """Return the effective config as JSON-able data; Decimals as strings, set secrets as "<redacted>".

    Built from `Config`'s own fields, so every section appears, also one added later. A table of
    tables (venues, users) drops from each entry the field that repeats its key (`venue`, `user_id`).
    """
    view: dict[str, object] = {}
    for section in fields(cfg):
        value = getattr(cfg, section.name)
        if isinstance(value, Mapping):
            view[section.name] = {
                key: _plain(entry, skip=fields(entry)[0].name) for key, entry in value.items()
            }
        else:
            view[section.name] = _plain(value)
    return view


def _plain(obj: DataclassInstance, skip: str = "") -> dict[str, object]:
    return {f.name: _plain_value(getattr(obj, f.name)) for f in fields(obj) if f.name != skip}


def _plain_value(value: object) -> object:
    if isinstance(value, Secret):
        return "<redacted>"
    if isinstance(value, Decimal | Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain_value(v) for k, v in value.items()}
    return value
