"""One bench run in a fresh process: `python -m bench.worker <scenario> ... --result FILE`.

The harness (`bench.run`) starts one worker per run and reads the JSON object
it writes to `--result`. Logs go to stderr. `sim` serves the exchange
simulator for the memory scenario instead, printing its venues' URLs as
one JSON line and serving until stdin closes; `market` serves the scripted
market of the isolation and reaction scenarios (`bench.market`) the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.server import bench_symbols
from daemon.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    sub = parser.add_subparsers(dest="scenario", required=True)
    ingest = sub.add_parser("ingest")
    ingest.add_argument("--client", required=True)
    ingest.add_argument("--port", type=int, required=True)
    ingest.add_argument("--symbols", type=int, default=200)
    ingest.add_argument("--frames", type=int, required=True)
    latency = sub.add_parser("latency")
    latency.add_argument("--venues", type=int, default=5)
    latency.add_argument("--symbols", type=int, default=200)
    latency.add_argument("--quotes", type=int, required=True)
    latency.add_argument("--seed", type=int, default=3)
    router = sub.add_parser("router", help="the router daemon under a closed loop of order requests")
    bare = sub.add_parser("bare", help="the bare consume→produce loop under the same closed loop")
    for loop in (router, bare):
        loop.add_argument("--bootstrap", required=True)
        loop.add_argument("--requests", type=int, required=True)
        loop.add_argument("--window", type=int, default=64)
        loop.add_argument("--warmup", type=int, default=50)
    bare.add_argument("--whole-fetch", action="store_true", help="one send and one commit per fetch")
    bare.add_argument("--result-bytes", type=int, default=None, help="default: a paper result's size")
    isolation = sub.add_parser("isolation", help="detector latency, router idle vs loaded, one daemon")
    isolation.add_argument("--bootstrap", required=True)
    isolation.add_argument("--phase-s", type=float, required=True)
    isolation.add_argument("--rounds", type=int, default=1)
    isolation.add_argument("--window", type=int, default=64)
    reaction = sub.add_parser("reaction", help="opportunity → arbitrage orders, beside the Kafka round trip")
    reaction.add_argument("--bootstrap", required=True)
    reaction.add_argument("--duration-s", type=float, required=True)
    reaction.add_argument("--fetch-max-wait-ms", type=int, default=5, help="the reacting client's consumer")
    scaleout = sub.add_parser("scaleout", help="route processes in one group under the closed loop")
    scaleout.add_argument("--bootstrap", required=True)
    scaleout.add_argument("--routers", type=int, required=True)
    scaleout.add_argument("--requests", type=int, required=True)
    scaleout.add_argument("--window", type=int, default=64)
    scaleout.add_argument("--warmup", type=int, default=50)
    scaleout.add_argument("--ledger-url", required=True, help="the routers' shared PostgreSQL ledger")
    memory = sub.add_parser("memory")
    memory.add_argument("--symbols", type=int, default=100)
    memory.add_argument("--tick-s", type=float, default=0.05)
    memory.add_argument("--warmup-s", type=float, default=10.0)
    memory.add_argument("--duration-s", type=float, required=True)
    for scenario in (ingest, latency, router, bare, isolation, reaction, scaleout, memory):
        scenario.add_argument("--result", type=Path, required=True)
    sim = sub.add_parser("sim")
    sim.add_argument("--symbols", required=True, help="comma-separated canonical symbols")
    sim.add_argument("--tick-s", type=float, default=0.05)
    market = sub.add_parser("market", help="serve the scripted market of bench.market until stdin closes")
    market.add_argument("--period-s", type=float, required=True)
    market.add_argument("--hold-s", type=float, required=True)
    return parser


def _ingest(args: argparse.Namespace) -> dict[str, Any]:
    from bench.ingest import run_client  # noqa: PLC0415 - peers import their libraries lazily

    symbols = bench_symbols(args.symbols)
    return asyncio.run(run_client(args.client, args.port, symbols, args.frames))


def _latency(args: argparse.Namespace) -> dict[str, Any]:
    from bench.latency import run_latency  # noqa: PLC0415

    return run_latency(venues=args.venues, symbols=args.symbols, quotes=args.quotes, seed=args.seed)


def _router(args: argparse.Namespace) -> dict[str, Any]:
    from bench.orders import run_bare, run_router  # noqa: PLC0415
    from bench.transport import BARE_RESULT_BYTES  # noqa: PLC0415

    if args.scenario == "bare":
        return asyncio.run(
            run_bare(
                args.bootstrap, requests=args.requests, window=args.window, warmup=args.warmup,
                result_bytes=args.result_bytes or BARE_RESULT_BYTES, per_partition=not args.whole_fetch,
            )
        )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="smartroute-bench-") as tmp:
        return asyncio.run(
            run_router(
                Path(tmp), args.bootstrap, requests=args.requests, window=args.window, warmup=args.warmup
            )
        )


def _isolation(args: argparse.Namespace) -> dict[str, Any]:
    from bench.isolation import run_isolation  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="smartroute-bench-") as tmp:
        return asyncio.run(
            run_isolation(
                Path(tmp), args.bootstrap, phase_s=args.phase_s, rounds=args.rounds, window=args.window
            )
        )


def _reaction(args: argparse.Namespace) -> dict[str, Any]:
    from bench.reaction import run_reaction  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="smartroute-bench-") as tmp:
        return asyncio.run(
            run_reaction(
                Path(tmp),
                args.bootstrap,
                duration_s=args.duration_s,
                fetch_max_wait_ms=args.fetch_max_wait_ms,
            )
        )


def _scaleout(args: argparse.Namespace) -> dict[str, Any]:
    from bench.scaleout import run_scaleout  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="smartroute-bench-") as tmp:
        return asyncio.run(
            run_scaleout(
                Path(tmp), args.bootstrap, routers=args.routers, requests=args.requests,
                window=args.window, warmup=args.warmup, ledger_url=args.ledger_url,
            )
        )  # fmt: skip


def _memory(args: argparse.Namespace) -> dict[str, Any]:
    from bench.soak import run_soak  # noqa: PLC0415
    from daemon.broker import EmbeddedBroker  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="smartroute-bench-") as tmp:
        workdir = Path(tmp)
        with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
            return asyncio.run(
                run_soak(
                    workdir, broker.bootstrap_servers, symbols=bench_symbols(args.symbols),
                    tick_s=args.tick_s, warmup_s=args.warmup_s, duration_s=args.duration_s,
                )
            )  # fmt: skip


async def _serve_simulator(symbols: list[str], tick_s: float) -> None:
    from bench.soak import SOAK_VENUES  # noqa: PLC0415
    from connectors.sim import ExchangeSimulator  # noqa: PLC0415

    async with ExchangeSimulator(SOAK_VENUES, symbols, seed=5, tick_interval_s=tick_s) as sim:
        urls = {venue: sim.ws_url(venue) for venue in SOAK_VENUES}
        sys.stdout.write(orjson.dumps(urls).decode() + "\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one scenario and write its result; serve the simulator for `sim`."""
    args = _parser().parse_args(argv)
    configure_logging("warning", stream=sys.stderr)
    if args.scenario == "sim":
        asyncio.run(_serve_simulator([s for s in args.symbols.split(",") if s], args.tick_s))
        return 0
    if args.scenario == "market":
        from bench.market import serve_market  # noqa: PLC0415

        asyncio.run(serve_market(args.period_s, args.hold_s))
        return 0
    runners = {
        "ingest": _ingest,
        "latency": _latency,
        "router": _router,
        "bare": _router,
        "isolation": _isolation,
        "reaction": _reaction,
        "scaleout": _scaleout,
        "memory": _memory,
    }
    result = runners[args.scenario](args)
    args.result.write_bytes(orjson.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
