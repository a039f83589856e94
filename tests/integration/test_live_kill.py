"""SIGKILL of the live router mid-burst on Bybit, OKX, Coinbase and Kraken, then a restart: nothing twice.

Each venue's fake REST server (fake_<venue>.py: signatures, timestamps, client-id rules as the
venue enforces them) runs in this process on the real clock. The router runs in a child process
(live_kill_child.py): the daemon's own `build_router` from a live config whose `trade_url` is the
fake, with the fake's credentials in the child's environment. It answers a burst of 20 order
requests one after another, as the router service does, and dies at the 8th order:

- "unanswered": the fake executes the 8th order but holds its answer; the test SIGKILLs the child
  once the fake has executed it (the order is in flight at the venue, the router never heard);
- "unrecorded": the child SIGKILLs itself right after the venue answered the 8th order, before
  the executor returns, so the ledger never records the outcome.

Either way the ledger holds that request in flight with its leg "sent". A second child on the
same state dir recovers (the leg is settled by querying its client order id; nothing is sent
again), then answers the whole burst again, as Kafka redelivers what was not committed.

Coinbase: its acceptance window is the JWT's life (120 s + the clock margin), and
`CoinbaseTrading` takes no setting to shorten it. It is not shortened here: both kill points
come after Coinbase accepted the order, so the restart finds it by query at once and never
waits for "not found" to become final.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import fake_bybit
import fake_coinbase
import fake_kraken
import fake_okx
import orjson
import pytest
from live_kill_child import ASK, BID, BURST, DEPTH, KRAKEN_REST_CAPACITY, KRAKEN_REST_DECAY_PER_S, SYMBOLS

from router.ledger import Ledger

pytestmark = pytest.mark.integration

CHILD = Path(__file__).with_name("live_kill_child.py")
KILL_AT = 8  # the order the router dies at (1-based)
KILLED_REQUEST = f"kill-{KILL_AT - 1:02d}"
BOOK = ([(str(BID), str(DEPTH))], [(str(ASK), str(DEPTH))])


@dataclass(frozen=True)
class Venue:
    """How the test drives one venue's fake."""

    name: str
    serve: Callable[[], AbstractAsyncContextManager[Any]]
    environ: Mapping[str, str]
    book_symbol: str
    hold_next_order: Callable[[Any], None]  # execute the next order but never answer it
    sent_ids: Callable[[Any], list[str]]  # the client id of every order request the fake received
    executed: Callable[[Any], list[tuple[str, Decimal]]]  # (client id, quantity) of each order executed


VENUES = {
    "bybit": Venue(
        "bybit",
        fake_bybit.FakeBybit,
        {"BYBIT_API_KEY": fake_bybit.API_KEY, "BYBIT_API_SECRET": fake_bybit.API_SECRET},
        "BTCUSDT",
        lambda fake: fake.inject("POST", "/v5/order/create", "accept_then_hang"),
        lambda fake: [
            orjson.loads(s.body)["orderLinkId"] for s in fake.requests_to("POST", "/v5/order/create")
        ],
        lambda fake: [(o.link_id, o.cum_qty) for o in fake.orders],
    ),
    "okx": Venue(
        "okx",
        fake_okx.FakeOkx,
        {
            "OKX_API_KEY": fake_okx.API_KEY,
            "OKX_API_SECRET": fake_okx.API_SECRET,
            "OKX_API_PASSPHRASE": fake_okx.PASSPHRASE,
        },
        "BTC-USDT",
        lambda fake: fake.inject("POST", "trade/order", "accept_then_hang"),
        lambda fake: [orjson.loads(s.body)["clOrdId"] for s in fake.requests_to("POST", "trade/order")],
        lambda fake: [(o.cl_ord_id, o.filled) for o in fake.orders],
    ),
    "coinbase": Venue(
        "coinbase",
        fake_coinbase.FakeCoinbase,
        {
            "COINBASE_API_KEY_NAME": fake_coinbase.KEY_NAME,
            "COINBASE_API_PRIVATE_KEY": fake_coinbase.EC_PRIVATE_PEM,
        },
        "BTC-USD",
        lambda fake: fake.inject("POST", "orders", "accept_then_hang"),
        lambda fake: [orjson.loads(s.body)["client_order_id"] for s in fake.requests_to("POST", "orders")],
        lambda fake: [(o.client_order_id, o.filled_size) for o in fake.orders],
    ),
    "kraken": Venue(
        "kraken",
        lambda: fake_kraken.FakeKraken(
            rest_capacity=KRAKEN_REST_CAPACITY, rest_decay_per_s=KRAKEN_REST_DECAY_PER_S
        ),
        {"KRAKEN_API_KEY": fake_kraken.API_KEY, "KRAKEN_API_SECRET": fake_kraken.API_SECRET},
        "XBTUSDT",
        lambda fake: fake.inject("AddOrder", "accept_then_hang"),
        lambda fake: [s.params["cl_ord_id"] for s in fake.requests_to("AddOrder")],
        lambda fake: [(o.cl_ord_id, o.vol_exec) for o in fake.orders],
    ),
}


def write_config(tmp_path: Path, venue: str, url: str) -> Path:
    path = tmp_path / "smartroute.toml"
    path.write_text(
        f'[daemon]\nmode = "live"\nhttp_port = 0\nstate_dir = "{tmp_path / "state"}"\n'
        "[risk]\nmax_order_notional = 10000000\nmax_orders_per_second = 1000\n"
        # Positions are valued in the symbol's own quote currency (USD on Coinbase, USDT elsewhere).
        f'valuation_currency = "{SYMBOLS[venue].rsplit("-", 1)[1]}"\n'
        # Live requires signatures by default; the venues are under test here (see test_signed_kafka).
        "[security]\nrequire_signatures = false\n"
        f'[venues.{venue}]\nsymbols = ["{SYMBOLS[venue]}"]\ntrade_url = "{url}"\n'
    )
    return path


class Child:
    """One live_kill_child.py process; its log goes to a file (a full pipe would stall it)."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    async def line(self) -> str:
        assert self.proc.stdout is not None
        return (await self.proc.stdout.readline()).decode().rstrip("\n")

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
async def children() -> AsyncIterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        if child.proc.returncode is None:
            child.proc.kill()
            await child.proc.wait()


async def start_child(children: list[Child], tmp_path: Path, venue: Venue, config: Path, *args: str) -> Child:
    log = tmp_path / f"child-{len(children)}.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), str(config), venue.name, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
            env=os.environ | dict(venue.environ),
        )  # fmt: skip
    children.append(child := Child(proc, log))
    return child


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def first_run(child: Child, venue: Venue, fake: Any, point: str) -> list[str]:
    """Read the first child's results until it dies at the KILL_AT-th order; return them."""
    results: list[str] = []
    while line := await child.line():
        if line.startswith("result "):
            results.append(line.removeprefix("result "))
        elif line.startswith("placing ") and point == "unanswered":
            await kill_once_executed(child, venue, fake, line.removeprefix("placing "))
        else:
            pytest.fail(f"child said {line!r}; stderr:\n{child.stderr()}")
    assert await child.proc.wait() == -signal.SIGKILL, child.stderr()
    return results


async def kill_once_executed(child: Child, venue: Venue, fake: Any, client_id: str) -> None:
    """Let the child send `client_id` to a venue that executes it and holds the answer; then SIGKILL it."""
    venue.hold_next_order(fake)
    assert child.proc.stdin is not None
    child.proc.stdin.write(b"go\n")
    await until(lambda: any(cid == client_id for cid, _ in venue.executed(fake)), "the execution")
    child.proc.send_signal(signal.SIGKILL)


def fills_by_client_id(results: list[dict[str, Any]]) -> dict[str, Decimal]:
    filled: dict[str, Decimal] = {}
    for result in results:
        for fill in result["fills"]:
            cid = fill["client_order_id"]
            filled[cid] = filled.get(cid, Decimal(0)) + Decimal(fill["quantity"])
    return filled


@pytest.mark.parametrize("point", ["unanswered", "unrecorded"])
@pytest.mark.parametrize("name", ["bybit", "okx", "coinbase", "kraken"])
async def test_a_router_killed_mid_burst_restarts_with_no_duplicate_order_and_every_request_answered(
    name: str, point: str, tmp_path: Path, children: list[Child]
) -> None:
    venue = VENUES[name]
    async with venue.serve() as fake:
        fake.set_book(venue.book_symbol, *BOOK)
        config = write_config(tmp_path, name, fake.rest_url)
        async with asyncio.timeout(90):
            first = await start_child(children, tmp_path, venue, config, "first", str(KILL_AT), point)
            answered = await first_run(first, venue, fake, point)
            with Ledger.open(tmp_path / "state") as ledger:  # the kill left an order in flight
                assert [rid for rid, _ in ledger.in_flight()] == [KILLED_REQUEST]
                assert [leg.state for leg in ledger.legs(KILLED_REQUEST)] == ["sent"]
            assert len(venue.executed(fake)) == KILL_AT  # the venue did execute it

            restarted = await start_child(children, tmp_path, venue, config, "restart")
            out, _ = await restarted.proc.communicate()
            assert restarted.proc.returncode == 0, restarted.stderr()
        sent, executed = venue.sent_ids(fake), venue.executed(fake)

    lines = answered + [line.removeprefix("result ") for line in out.decode().splitlines()]
    distinct: dict[str, set[str]] = {}
    for line in lines:
        distinct.setdefault(orjson.loads(line)["request_id"], set()).add(line)
    assert sorted(distinct) == [f"kill-{n:02d}" for n in range(BURST)]  # every request answered ...
    assert all(len(answers) == 1 for answers in distinct.values())  # ... with one result, whatever replayed
    results = [orjson.loads(next(iter(answers))) for answers in distinct.values()]
    assert {r["status"] for r in results} == {"filled"}, [r["message"] for r in results]

    assert max(Counter(sent).values()) == 1 and len(sent) == BURST  # no order was ever sent twice
    assert max(Counter(cid for cid, _ in executed).values()) == 1  # 0 duplicate executions
    at_venue = {cid: quantity for cid, quantity in executed}
    assert at_venue == fills_by_client_id(results)  # the exchange's orders are the results' fills
    recovered = orjson.loads(next(iter(distinct[KILLED_REQUEST])))
    assert "nothing was sent again" in recovered["message"]
