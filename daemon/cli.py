"""The `smartroute` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import orjson
import structlog

from connectors.errors import SmartrouteError
from daemon.config import Config, load_config, redacted_view
from daemon.errors import ConfigError
from daemon.logs import configure_logging

DEFAULT_CONFIG = Path("/etc/smartroute/smartroute.toml")
EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus keeps a bad config from restart-looping
EXIT_FAILURE = 1

log = structlog.get_logger(__name__)


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"TOML config file (default {DEFAULT_CONFIG}; env SMARTROUTE_<SECTION>__<KEY> overrides)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="smartroute", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run feeds, detector and publisher in one process")
    _add_config_flag(run)
    run.add_argument("--live", action="store_true", help="required together with mode = 'live'")

    check = sub.add_parser("check-config", help="validate the config and print it (secrets redacted)")
    _add_config_flag(check)

    demo = sub.add_parser("demo", help="embedded broker + exchange simulator + daemon, for a first look")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--seed", type=int, default=None, help="simulator seed (default: random)")

    sim = sub.add_parser("sim", help="run the multi-venue exchange simulator alone")
    sim.add_argument("--venues", default="binance,bybit", help="comma-separated venue ids")
    sim.add_argument("--symbols", default="BTC-USDT,ETH-USDT,SOL-USDT", help="comma-separated symbols")
    sim.add_argument("--port-base", type=int, default=0, help="first venue's port, next venues +1 (0: free)")
    sim.add_argument("--seed", type=int, default=None)
    return parser


def _load(path: Path | None) -> Config:
    return load_config(path if path is not None else DEFAULT_CONFIG)


def _run_until_signalled(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run `main(stop)`; the first SIGINT/SIGTERM sets `stop`, a second one exits at once."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if stop.is_set():
                log.warning("second_signal_exit_now", signal=signal.Signals(signum).name)
                os._exit(128 + signum)
            log.info("signal_received", signal=signal.Signals(signum).name)
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        await main(stop)

    asyncio.run(runner())


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGINT/SIGTERM."""
    cfg = _load(args.config)
    configure_logging(cfg.daemon.log_level)
    if cfg.daemon.mode == "live" and not args.live:
        raise ConfigError("daemon.mode: 'live' also needs the --live flag on the command line")
    if args.live and cfg.daemon.mode != "live":
        raise ConfigError("--live given but daemon.mode is 'paper'; set mode = 'live' to trade for real")
    if not cfg.enabled_venues():
        raise ConfigError("venues: no venue is enabled; add a [venues.<id>] section")

    from daemon.app import Daemon

    _run_until_signalled(Daemon(cfg).run)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Print the effective configuration as JSON, secrets redacted."""
    cfg = _load(args.config)
    sys.stdout.write(orjson.dumps(redacted_view(cfg), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the self-contained demo."""
    from daemon.demo import run_demo

    _run_until_signalled(lambda stop: run_demo(stop, duration_s=args.duration, seed=args.seed))
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    """Serve the exchange simulator until interrupted."""
    from connectors.sim import ExchangeSimulator

    configure_logging("info")
    venues = [v.strip() for v in args.venues.split(",") if v.strip()]
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    ports = {venue: args.port_base + i for i, venue in enumerate(venues)} if args.port_base else None

    async def main(stop: asyncio.Event) -> None:
        sim = ExchangeSimulator(venues, symbols, ports=ports, seed=args.seed)
        serving = asyncio.create_task(sim.run_until_cancelled(), name="simulator")
        await stop.wait()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)

    _run_until_signalled(main)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "check-config": cmd_check_config,
    "demo": cmd_demo,
    "sim": cmd_sim,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `smartroute` console script."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        sys.stderr.write(f"smartroute: configuration error: {exc}\n")
        return EXIT_CONFIG
    except SmartrouteError as exc:
        sys.stderr.write(f"smartroute: {exc}\n")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
