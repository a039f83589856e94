"""The `smartroute` command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
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
EXIT_USAGE = 2
EXIT_NOT_FILLED = 3  # `order`: a result arrived, but it is rejected or failed

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

    route = sub.add_parser("route", help="run the order router alone (with the feeds it prices from)")
    _add_config_flag(route)
    route.add_argument("--live", action="store_true", help="required together with mode = 'live'")
    for role, what in (
        ("feeds", "scale-out: stream the exchanges and publish every quote to smartroute.quotes"),
        ("detect", "scale-out: detect arbitrage on quotes read from smartroute.quotes"),
    ):
        role_parser = sub.add_parser(role, help=what)
        _add_config_flag(role_parser)
        role_parser.set_defaults(live=False)

    _add_client_commands(sub)

    topics = sub.add_parser("topics", help="create or check the contract's Kafka topics ([topics] config)")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True)
    for action, what in (
        ("create", "create every missing topic; report existing ones that differ from the config"),
        ("check", "report every missing topic or differing setting; change nothing"),
    ):
        _add_config_flag(topics_sub.add_parser(action, help=what))

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

    record = sub.add_parser("record", help="record the enabled venues' raw frames to a compressed file")
    _add_config_flag(record)
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


def _add_signer_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--signer", default=None, help="sign as this user or operator id (with --key)")
    parser.add_argument(
        "--key", type=Path, default=None, help="the signer's private key file (smartroute keygen)"
    )


def _add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands that talk to a running system: order, halt, resume, top."""
    order = sub.add_parser("order", help="send one order request and print its result")
    _add_config_flag(order)
    order.add_argument("--json", dest="json_request", help="the whole request as JSON (other flags ignored)")
    order.add_argument("--symbol", help="canonical symbol, e.g. BTC-USDT")
    order.add_argument("--side", choices=("buy", "sell"))
    order.add_argument("--quantity", help="base quantity as a decimal, e.g. 0.25")
    order.add_argument("--type", dest="order_type", choices=("market", "limit"), default="market")
    order.add_argument("--limit-price")
    order.add_argument("--venues", help="comma-separated allow-list of venues")
    order.add_argument("--buy-venue", help="arbitrage: venue to buy on")
    order.add_argument("--sell-venue", help="arbitrage: venue to sell on")
    order.add_argument("--max-slippage-bps")
    order.add_argument("--user", default=None, help="user_id (default: your login name)")
    order.add_argument("--request-id", default=None, help="default: a fresh unique id")
    order.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the result")
    _add_signer_flags(order)

    for command, what in (("halt", "stop new executions everywhere"), ("resume", "lift a halt")):
        control = sub.add_parser(command, help=f"{what} (a message on the control topic)")
        _add_config_flag(control)
        control.add_argument("--reason", required=command == "halt", default="")
        control.add_argument(
            "--by", default=None, help="who issues it (default: your login name, or --signer)"
        )
        _add_signer_flags(control)

    keygen = sub.add_parser("keygen", help="write a new Ed25519 signing key and print its public key line")
    keygen.add_argument("--out", type=Path, required=True, help="the private key file to create (mode 0600)")

    top = sub.add_parser("top", help="live terminal view of a running daemon")
    _add_config_flag(top)
    top.add_argument("--url", default=None, help="the daemon's HTTP address (default: from daemon.http_port)")
    top.add_argument("--once", action="store_true", help="print one view and exit")
    top.add_argument("--refresh", type=float, default=1.0, help="seconds between refreshes")


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


def cmd_run(args: argparse.Namespace, roles: frozenset[str] | None = None) -> int:
    """Run the daemon until SIGINT/SIGTERM."""
    cfg = _load(args.config)
    configure_logging(cfg.daemon.log_level)
    if cfg.daemon.mode == "live" and not args.live:
        raise ConfigError("daemon.mode: 'live' also needs the --live flag on the command line")
    if args.live and cfg.daemon.mode != "live":
        raise ConfigError("--live given but daemon.mode is 'paper'; set mode = 'live' to trade for real")
    if not cfg.enabled_venues():
        raise ConfigError("venues: no venue is enabled; add a [venues.<id>] section")

    from daemon.app import ALL_ROLES, Daemon

    _run_until_signalled(Daemon(cfg, roles=ALL_ROLES if roles is None else roles).run)
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


def cmd_order(args: argparse.Namespace) -> int:
    """Send one order request, wait for its result and print it; exit 0 if anything filled."""
    from daemon.client import Signer, build_order, new_request_id, send_order

    cfg = _load(args.config)
    signer = Signer.from_flags(args.signer, args.key)
    if args.json_request is not None:
        try:
            message = orjson.loads(args.json_request)
        except orjson.JSONDecodeError as exc:
            sys.stderr.write(f"smartroute: --json is not valid JSON: {exc}\n")
            return EXIT_USAGE
    else:
        missing = [
            flag for flag, value in (("--symbol", args.symbol), ("--quantity", args.quantity)) if not value
        ]
        if args.buy_venue is None and args.side is None:
            missing.append("--side (or --buy-venue/--sell-venue for arbitrage)")
        if missing:
            sys.stderr.write(f"smartroute: order needs {', '.join(missing)}\n")
            return EXIT_USAGE
        message = build_order(
            symbol=args.symbol,
            quantity=args.quantity,
            user_id=args.user or (signer.principal if signer else getpass.getuser()),
            request_id=args.request_id or new_request_id(),
            side=args.side,
            order_type=args.order_type,
            limit_price=args.limit_price,
            venues=[v for v in (args.venues or "").split(",") if v] or None,
            buy_venue=args.buy_venue,
            sell_venue=args.sell_venue,
            max_slippage_bps=args.max_slippage_bps,
        )
    if not isinstance(message, dict) or not isinstance(message.get("request_id"), str):
        sys.stderr.write("smartroute: the request needs a string request_id\n")
        return EXIT_USAGE
    result = asyncio.run(send_order(cfg.kafka, message, args.timeout, signer))
    if result is None:
        sys.stderr.write(f"smartroute: no result for {message['request_id']} within {args.timeout:g} s\n")
        return EXIT_FAILURE
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if result.get("status") in ("filled", "partially_filled") else EXIT_NOT_FILLED


def cmd_control(args: argparse.Namespace) -> int:
    """Publish a halt or resume on the control topic."""
    from daemon.client import Signer, send, signed_control_message

    cfg = _load(args.config)
    signer = Signer.from_flags(args.signer, args.key)
    message = signed_control_message(args.command, args.reason, args.by, signer)
    asyncio.run(send(cfg.kafka, cfg.topic("control"), None, message, signer))
    sys.stdout.write(f"{args.command} sent to {cfg.topic('control')} by {message['issued_by']}\n")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Print the effective configuration as JSON, secrets redacted."""
    cfg = _load(args.config)
    sys.stdout.write(orjson.dumps(redacted_view(cfg), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create a private key file readable by its owner only; print the public key line for the config."""
    from router.signatures import generate_key_file

    try:
        public = generate_key_file(args.out)
    except FileExistsError:
        sys.stderr.write(f"smartroute: {args.out} exists; refusing to overwrite a key (move it away first)\n")
        return EXIT_FAILURE
    except OSError as exc:
        sys.stderr.write(f"smartroute: cannot create {args.out}: {exc.strerror}\n")
        return EXIT_FAILURE
    sys.stdout.write(f'public_keys = ["{public}"]\n')
    sys.stderr.write(
        f"wrote the private key to {args.out} (mode 0600); paste the line above into the signer's "
        "[users.<id>] or [operators.<id>] section\n"
    )
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    """Create or check the contract's topics, one line each; exit 0 only if all are as configured."""
    from daemon.kafka.topics import check_topics, create_topics

    cfg = _load(args.config)
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

    cfg = _load(args.config)
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

    cfg = _load(args.config)
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
