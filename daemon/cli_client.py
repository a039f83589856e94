"""The client side of the command line: `smartroute order`, `halt`, `resume` and `keygen`.

They talk to a running system through Kafka (`daemon.client`), signing what they send when given
`--signer ID --key FILE` (`router.signatures`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

import orjson

from daemon.cli_args import EXIT_FAILURE, EXIT_NOT_FILLED, EXIT_USAGE, add_config_flag, load


def _add_signer_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--signer", default=None, help="sign as this user or operator id (with --key)")
    parser.add_argument(
        "--key", type=Path, default=None, help="the signer's private key file (smartroute keygen)"
    )


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands a desk or an operator runs against a running system: order, halt, resume, keygen."""
    order = sub.add_parser("order", help="send one order request and print its result")
    add_config_flag(order)
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
        add_config_flag(control)
        control.add_argument("--reason", required=command == "halt", default="")
        control.add_argument(
            "--by", default=None, help="who issues it (default: your login name, or --signer)"
        )
        _add_signer_flags(control)

    keygen = sub.add_parser("keygen", help="write a new Ed25519 signing key and print its public key line")
    keygen.add_argument("--out", type=Path, required=True, help="the private key file to create (mode 0600)")


def cmd_order(args: argparse.Namespace) -> int:
    """Send one order request, wait for its result and print it; exit 0 if anything filled."""
    from daemon.client import Signer, build_order, new_request_id, send_order

    cfg = load(args.config)
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

    cfg = load(args.config)
    signer = Signer.from_flags(args.signer, args.key)
    message = signed_control_message(args.command, args.reason, args.by, signer)
    asyncio.run(send(cfg.kafka, cfg.topic("control"), None, message, signer))
    sys.stdout.write(f"{args.command} sent to {cfg.topic('control')} by {message['issued_by']}\n")
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
