"""What every `smartroute` subcommand shares: exit codes, the default config file, `--config`."""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.config import Config, load_config

DEFAULT_CONFIG = Path("/etc/smartroute/smartroute.toml")
EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus keeps a bad config from restart-looping
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FILLED = 3  # `order`: a result arrived, but it is rejected or failed


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"TOML config file (default {DEFAULT_CONFIG}; env SMARTROUTE_<SECTION>__<KEY> overrides)",
    )


def load(path: Path | None) -> Config:
    """Load the config at `path`, or the default file when none is given."""
    return load_config(path if path is not None else DEFAULT_CONFIG)
