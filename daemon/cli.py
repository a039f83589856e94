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
from daemon.cli_args import EXIT_CONFIG, EXIT_FAILURE, add_config_flag, load
from daemon.cli_client import add_client_commands, cmd_control, cmd_keygen, cmd_order
from daemon.config import Config, load_config, redacted_view
from daemon.errors import ConfigError
from daemon.logs import configure_logging

log = structlog.get_logger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="smartroute", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run feeds, detector and publisher in one process")
    add_config_flag(run)
    run.add_argument("--live", action="store_true", help="required together with mode = 'live'")

    route = sub.add_parser("route", help="run the order router alone (with the feeds it prices from)")
    add_config_flag(route)
    route.add_argument("--live", action="store_true", help="required together with mode = 'live'")
    for role, what in (
        ("feeds", "scale-out: stream the exchanges and publish every quote to smartroute.quotes"),
        ("detect", "scale-out: detect arbitrage on quotes read from smartroute.quotes"),
    ):
        role_parser = sub.add_parser(role, help=what)
        add_config_flag(role_parser)
        role_parser.set_defaults(live=False)

    add_client_commands(sub)
    _add_top_command(sub)

    topics = sub.add_parser("topics", help="create or check the contract's Kafka topics ([topics] config)")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True)
    for action, what in (
        ("create", "create every missing topic; report existing ones that differ from the config"),
        ("check", "report every missing topic or differing setting; change nothing"),
    ):
        add_config_flag(topics_sub.add_parser(action, help=what))

    check = sub.add_parser("check-config", help="validate the config and print it (secrets redacted)")
    add_config_flag(check)

    demo = sub.add_parser("demo", help="embedded broker + exchange simulator + daemon, for a first look")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--seed", type=int, default=None, help="simulator seed (default: random)")

    sim = sub.add_parser("sim", help="run the multi-venue exchange simulator alone")
    sim.add_argument("--venues", default="binance,bybit", help="comma-separated venue ids")
    sim.add_argument("--symbols", default="BTC-USDT,ETH-USDT,SOL-USDT", help="comma-separated symbols")
    sim.add_argument("--port-base", type=int, default=0, help="first venue's port, next venues +1 (0: free)")
    sim.add_argument("--seed", type=int, default=None)

    record = sub.add_parser("record", help="record the enabled venues' raw frames to a compressed file")
    add_config_flag(record)
    record.add_argument("--out", type=Path, required=True, help="recording to create (never overwritten)")
    record.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    record.add_argument("--venues", default=None, help="comma-separated venue ids (default: every enabled)")

    replay = sub.add_parser("replay", help="replay a recording through cache and detector, deterministically")
    replay.add_argument("recording", type=Path, help="a file written by `smartroute record`")
    replay.add_argument("--out", type=Path, default=None, help="events file, JSON lines (default: stdout)")
    replay.add_argument(
        "--config", type=Path, default=None, help="detector, cache and fee settings (default: built-in)"
    )
    return parser


def _add_top_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The live terminal view of a running daemon."""
    top = sub.add_parser("top", help="live terminal view of a running daemon")
    add_config_flag(top)
    top.add_argument("--url", default=None, help="the daemon's HTTP address (default: from daemon.http_port)")
    top.add_argument("--once", action="store_true", help="print one view and exit")
    top.add_argument("--refresh", type=float, default=1.0, help="seconds between refreshes")


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


def cmd_run(args: argparse.Namespace, roles: frozenset[str] | None = None) -> int:
    """Run the daemon until SIGINT/SIGTERM."""
    cfg = load(args.config)
    configure_logging(cfg.daemon.log_level)
    if cfg.daemon.mode == "live" and not args.live:
        raise ConfigError("daemon.mode: 'live' also needs the --live flag on the command line")
    if args.live and cfg.daemon.mode != "live":
        raise ConfigError("--live given but daemon.mode is 'paper'; set mode = 'live' to trade for real")
    if not cfg.enabled_venues():
        raise ConfigError("venues: no venue is enabled; add a [venues.<id>] section")

    from daemon.app import ALL_ROLES, Daemon

    _run_until_signalled(Daemon(cfg, roles=ALL_ROLES if roles is None else roles, freeze_heap=True).run)
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    """Run the router role (and the feeds it prices from) until SIGINT/SIGTERM."""
    return cmd_run(args, roles=frozenset({"feeds", "route"}))


def cmd_feeds(args: argparse.Namespace) -> int:
    """Stream the exchanges and publish every quote until SIGINT/SIGTERM."""
    return cmd_run(args, roles=frozenset({"feeds", "publish_quotes"}))


def cmd_detect(args: argparse.Namespace) -> int:
    """Detect opportunities on the quotes topic until SIGINT/SIGTERM."""
    return cmd_run(args, roles=frozenset({"consume_quotes", "detect"}))


def cmd_check_config(args: argparse.Namespace) -> int:
    """Print the effective configuration as JSON, secrets redacted."""
    cfg = load(args.config)
    sys.stdout.write(orjson.dumps(redacted_view(cfg), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    """Create or check the contract's topics, one line each; exit 0 only if all are as configured."""
    from daemon.kafka.topics import check_topics, create_topics

    cfg = load(args.config)
    action = create_topics if args.topics_command == "create" else check_topics
    states = asyncio.run(action(cfg.kafka, cfg.topics))
    for state in states:
        sys.stdout.write(state.line() + "\n")
    return 0 if all(state.status in ("ok", "created") for state in states) else EXIT_FAILURE


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


def cmd_record(args: argparse.Namespace) -> int:
    """Record raw frames until SIGINT/SIGTERM or --duration, then print what was written."""
    from daemon.record import record

    cfg = load(args.config)
    configure_logging(cfg.daemon.log_level)
    venues = [v.strip() for v in args.venues.split(",") if v.strip()] if args.venues else None

    async def main(stop: asyncio.Event) -> None:
        summary = await record(cfg.venues, args.out, stop, duration_s=args.duration, venues=venues)
        sys.stdout.write(orjson.dumps(summary, default=str).decode() + "\n")

    _run_until_signalled(main)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay a recording, write its events, print the counts (to stderr when events go to stdout)."""
    from daemon.record import replay_file, replay_settings

    cfg = load_config(args.config) if args.config is not None else Config()
    stats = replay_file(replay_settings(cfg.detector, cfg.cache, cfg.venues), args.recording, args.out)
    counts = orjson.dumps(stats).decode() + "\n"
    (sys.stdout if args.out is not None else sys.stderr).write(counts)
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    """Show the live terminal view until Ctrl-C."""
    from daemon.top import run_top

    cfg = load(args.config)
    url = args.url or f"http://{cfg.daemon.http_host}:{cfg.daemon.http_port}"
    _run_until_signalled(lambda stop: run_top(cfg.kafka, url, stop, refresh_s=args.refresh, once=args.once))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "top": cmd_top,
    "run": cmd_run,
    "route": cmd_route,
    "feeds": cmd_feeds,
    "detect": cmd_detect,
    "order": cmd_order,
    "halt": cmd_control,
    "resume": cmd_control,
    "check-config": cmd_check_config,
    "topics": cmd_topics,
    "demo": cmd_demo,
    "sim": cmd_sim,
    "record": cmd_record,
    "replay": cmd_replay,
    "keygen": cmd_keygen,
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
    except BaseExceptionGroup as group:
        # A service that failed inside the daemon's TaskGroup: say what went wrong, as above.
        ours, others = group.split(SmartrouteError)
        if ours is None or others is not None:
            raise
        for message in dict.fromkeys(str(exc) for exc in _leaves(ours)):
            sys.stderr.write(f"smartroute: {message}\n")
        return EXIT_FAILURE


def _leaves(group: BaseExceptionGroup[SmartrouteError]) -> list[SmartrouteError]:
    """Return the errors of `group` and of the groups nested in it, in order."""
    found: list[SmartrouteError] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


if __name__ == "__main__":
    sys.exit(main())
