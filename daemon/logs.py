"""structlog set-up: one JSON object per line on stdout, for the daemon and the libraries under it."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Field names whose values are never written, whatever logged them (defence in depth: nothing
# should log a secret, but a mistake here must not leak one).
_SECRET_FIELDS = frozenset(
    {"api_key", "api_secret", "secret", "signature", "password", "sasl_password", "private_key", "token"}
)


def _redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in _SECRET_FIELDS.intersection(event_dict):
        event_dict[key] = "<redacted>"
    return event_dict


def _json_dumps(obj: Any, **_: Any) -> str:
    # A log line must never raise where it is written (a handler logging a failure would then fail
    # itself): keys need not be strings, and any value JSON cannot hold is written as its str().
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send structlog events and stdlib logging (aiokafka, aiohttp) as JSON lines to `stream`.

    Libraries log at WARNING and above only, so their chatter never floods the output.
    """
    if level not in _LEVELS:
        raise ValueError(f"log level must be one of {sorted(_LEVELS)}, got {level!r}")
    out = stream if stream is not None else sys.stdout
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_json_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(serializer=_json_dumps),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.WARNING, _LEVELS[level]))
