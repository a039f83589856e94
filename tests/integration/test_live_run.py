"""`smartroute run --live` end to end: five venues' market data and orders, Kafka in and out (#13).

The real daemon runs as a child process (`python -m daemon.cli run --live --config ...`) with
each venue's credentials in its environment, exactly as an operator starts it:

- market data comes from the exchange simulator (`connectors.sim.ExchangeSimulator`), every
  venue over its own WebSocket protocol;
- orders go to the five fake REST venues (fake_{binance,bybit,okx,coinbase,kraken}.py, which
  check signatures, timestamps/nonces and client-id rules as each venue does), through each
  venue's `trade_url`;
- order requests go in on the orders topic and results come out on the results topic of the
  session's broker (`embedded_broker`: Tansu and Apache Kafka).

The market is scripted, not random: the simulator's price model stands still (autoplay off)
and `QUOTES` is pushed once, and each fake's book is set to the very same levels before the
daemon starts. The prices the router quotes from are therefore the prices the venues fill at,
so every IOC limit fills, whatever the machine's speed. Since the quotes are pushed once, the
config widens the cache's quote age limits and the feeds' silence timeout past the test's
length; a still quote is then still tradable, the one thing this test needs from the market.

Bybit bids above everyone's ask on BTC-USDT and Kraken above Coinbase's ask on BTC-USD, so
the detector opens an opportunity naming every venue: that each one is on the opportunities
topic is the proof that all five feeds are in the cache before any order is sent (`run` writes
no quotes topic). Binance, Bybit, OKX and Kraken trade BTC-USDT; Coinbase and Kraken BTC-USD.
Each venue gets one buy (its allow-list naming it alone) and each opportunity one arbitrage, so
every venue buys and Bybit and Kraken also sell.

The fake Kraken account is on the pro tier (FakeKraken's counters), so the config says
`tier = "pro"`: on the starter default the client paces its REST calls to starter's slower
counter and the same run takes about 20 s instead of 3.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import fake_binance
import fake_bybit
import fake_coinbase
import fake_kraken
import fake_okx
import orjson
import pytest
from contract import assert_valid
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka_support import Record, TopicReader, create_contract_topics
from venue_helpers import FAKE_CREDENTIALS

from connectors.sim import ExchangeSimulator
from daemon.client import Signer, send
from daemon.config import Config, load_config
from router.signatures import public_key_text

pytestmark = pytest.mark.integration

DESK = Signer("desk", Ed25519PrivateKey.generate())  # the user every request is sent and signed as

REPO = Path(__file__).resolve().parents[2]
VENUES = ("binance", "bybit", "okx", "coinbase", "kraken")
SYMBOLS = {v: ("BTC-USDT",) for v in ("binance", "bybit", "okx")} | {
    "coinbase": ("BTC-USD",),
    "kraken": ("BTC-USDT", "BTC-USD"),
}
# (bid, ask) per venue and symbol: what the simulator quotes and what each fake's book holds.
# HIGH clears Kraken's and Coinbase's real taker fees (0.26 %, 0.6 % on the fakes) with room to spare.
LOW, HIGH = ("63990", "64000"), ("65000", "65010")
QUOTES = {
    ("binance", "BTC-USDT"): LOW,
    ("bybit", "BTC-USDT"): HIGH,
    ("okx", "BTC-USDT"): LOW,
    ("kraken", "BTC-USDT"): LOW,
    ("coinbase", "BTC-USD"): LOW,
    ("kraken", "BTC-USD"): HIGH,
}
DEPTH = "1"  # the size of every level, far above what the test trades
QUANTITY = "0.001"
# Every (buy venue, sell venue, symbol) the detector must open before the test sends an order.
EXPECTED_OPPORTUNITIES = {
    ("binance", "bybit", "BTC-USDT"),
    ("okx", "bybit", "BTC-USDT"),
    ("kraken", "bybit", "BTC-USDT"),
    ("coinbase", "kraken", "BTC-USD"),
}
# The venue's own symbol of a canonical one, on each fake.
BOOK_SYMBOL = {
    ("binance", "BTC-USDT"): "BTCUSDT",
    ("bybit", "BTC-USDT"): "BTCUSDT",
    ("okx", "BTC-USDT"): "BTC-USDT",
    ("kraken", "BTC-USDT"): "XBTUSDT",
    ("kraken", "BTC-USD"): "XXBTZUSD",
    ("coinbase", "BTC-USD"): "BTC-USD",
}
ENVIRON = FAKE_CREDENTIALS
# (client order id, executed quantity) of every order a fake executed.
EXECUTED: Mapping[str, Callable[[Any], list[tuple[str, Decimal]]]] = {
    "binance": lambda fake: [(o.client_order_id, o.executed_qty) for o in fake.orders],
    "bybit": lambda fake: [(o.link_id, o.cum_qty) for o in fake.orders],
    "okx": lambda fake: [(o.cl_ord_id, o.filled) for o in fake.orders],
    "coinbase": lambda fake: [(o.client_order_id, o.filled_size) for o in fake.orders],
    "kraken": lambda fake: [(o.cl_ord_id, o.vol_exec) for o in fake.orders],
}


@dataclass
class Market:
    sim: ExchangeSimulator
    fakes: dict[str, Any]


@pytest.fixture
async def market() -> AsyncIterator[Market]:
    async with AsyncExitStack() as stack:
        sim = await stack.enter_async_context(
            ExchangeSimulator(VENUES, ("BTC-USDT", "BTC-USD"), autoplay=False, seed=13)
        )
        fakes: dict[str, Any] = {
            "binance": await stack.enter_async_context(fake_binance.FakeBinance()),
            "bybit": await stack.enter_async_context(fake_bybit.FakeBybit()),
            "okx": await stack.enter_async_context(fake_okx.FakeOkx()),
            "coinbase": await stack.enter_async_context(fake_coinbase.FakeCoinbase()),
            "kraken": await stack.enter_async_context(fake_kraken.FakeKraken()),
        }
        for (venue, symbol), (bid, ask) in QUOTES.items():
            fakes[venue].set_book(BOOK_SYMBOL[venue, symbol], [(bid, DEPTH)], [(ask, DEPTH)])
        yield Market(sim, fakes)


def write_config(path: Path, bootstrap: str, prefix: str, market: Market) -> Config:
    sections = []
    for venue in VENUES:
        rest = f'rest_url = "{market.sim.rest_url(venue)}"\n' if venue in ("binance", "okx") else ""
        sections.append(
            f"[venues.{venue}]\nsymbols = {list(SYMBOLS[venue])!r}\n"
            f'ws_url = "{market.sim.ws_url(venue)}"\n{rest}'
            f'trade_url = "{market.fakes[venue].rest_url}"\n'
            "taker_fee_bps = 10\nsilence_timeout_ms = 120000\n"
            # The fake's account is on Kraken's pro tier (FakeKraken's counters): the client must know.
            + ('tier = "pro"\n' if venue == "kraken" else "")
        )
    path.write_text(
        f'[daemon]\nmode = "live"\nhttp_port = 0\nstate_dir = "{path.parent / "state"}"\n'
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntopic_prefix = "{prefix}"\n'
        "[router]\nsession_timeout_ms = 2000\n"
        "[cache]\nttl_ms = 120000\nmax_quote_age_ms = 120000\n"
        "[detector]\nmin_net_profit_bps = 5\nmax_notional = 10000\n"
        # Live requires signatures by default: the desk signs every request (router.signatures).
        f'[users.desk]\npublic_keys = ["{public_key_text(DESK.key.public_key())}"]\n' + "".join(sections)
    )
    return load_config(path, environ={})


def opened(records: list[Record]) -> dict[tuple[str, str, str], str]:
    """Return the id of each opened opportunity by (buy venue, sell venue, symbol)."""
    found = {}
    for record in records:
        event = orjson.loads(record.value)
        if event["event"] == "opened":
            found[event["buy_venue"], event["sell_venue"], event["symbol"]] = event["id"]
    return found


def requests(opportunities: Mapping[tuple[str, str, str], str]) -> dict[str, dict[str, object]]:
    """One buy on each venue (its allow-list naming it alone), and one arbitrage per opportunity."""
    base: dict[str, object] = {"v": 1, "user_id": "desk", "quantity": QUANTITY}
    sent = {
        f"order-{venue}": base
        | {"request_id": f"order-{venue}", "kind": "order", "side": "buy", "venues": [venue]}
        | {"symbol": SYMBOLS[venue][0]}
        for venue in VENUES
    }
    for buy, sell, symbol in sorted(EXPECTED_OPPORTUNITIES):
        request_id = f"arb-{buy}-{sell}"
        sent[request_id] = base | {"request_id": request_id, "kind": "arbitrage", "symbol": symbol}
        sent[request_id] |= {"buy_venue": buy, "sell_venue": sell}
        sent[request_id] |= {"opportunity_id": opportunities[buy, sell, symbol]}
    return sent


async def start_daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SMARTROUTE_")} | ENVIRON
    with log.open("wb") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon.cli", "run", "--live", "--config", str(config),
            cwd=REPO, env=environ, stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )  # fmt: skip


async def collect_results(reader: TopicReader, ids: set[str], daemon: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(40):
        while not ids <= {r.key.decode() for r in reader.records if r.key is not None}:
            assert daemon.returncode is None, "the daemon exited"
            await reader.poll()


async def test_smartroute_run_live_routes_and_arbitrages_across_all_five_venues(
    embedded_broker: str, tmp_path: Path, market: Market
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    config = tmp_path / "smartroute.toml"
    cfg = write_config(config, embedded_broker, prefix, market)
    log = tmp_path / "daemon.log"
    daemon = await start_daemon(config, log)
    try:
        async with (
            TopicReader(embedded_broker, cfg.topic("opportunities")) as opportunities,
            TopicReader(embedded_broker, cfg.topic("results")) as results,
        ):
            for venue in VENUES:
                for symbol in SYMBOLS[venue]:
                    await market.sim.wait_subscribed(venue, symbol, timeout=30)
            for (venue, symbol), (bid, ask) in QUOTES.items():
                await market.sim.push_quote(venue, symbol, bid, DEPTH, ask, DEPTH)
            async with asyncio.timeout(30):
                while not set(opened(opportunities.records)) >= EXPECTED_OPPORTUNITIES:
                    await opportunities.poll()
            sent = requests(opened(opportunities.records))
            for request_id, message in sent.items():
                await send(cfg.kafka, cfg.topic("orders"), request_id.encode(), message, DESK)
            await collect_results(results, set(sent), daemon)
        daemon.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await daemon.wait() == 0, log.read_text(errors="replace")[-4000:]
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        print(log.read_text(errors="replace")[-6000:])  # shown by pytest when the test fails

    answers = {}
    for record in results.records:
        result = orjson.loads(record.value)
        assert_valid("execution-result", result)
        answers[result["request_id"]] = result
    assert set(answers) == set(sent)
    for result in answers.values():
        assert (result["mode"], result["status"]) == ("live", "filled"), result
        assert Decimal(result["filled_quantity"]) == Decimal(QUANTITY), result
    for venue in VENUES:
        fills = answers[f"order-{venue}"]["fills"]
        ask = QUOTES[venue, SYMBOLS[venue][0]][1]
        assert [(f["venue"], f["side"], Decimal(f["price"])) for f in fills] == [(venue, "buy", Decimal(ask))]
    for buy, sell, _ in EXPECTED_OPPORTUNITIES:
        legs = {(f["venue"], f["side"]) for f in answers[f"arb-{buy}-{sell}"]["fills"]}
        assert legs == {(buy, "buy"), (sell, "sell")}
    # Each fake executed exactly the orders the results report, each once, in the reported size.
    reported: dict[str, list[tuple[str, Decimal]]] = {venue: [] for venue in VENUES}
    for result in answers.values():
        for fill in result["fills"]:
            reported[fill["venue"]].append((fill["client_order_id"], Decimal(fill["quantity"])))
    for venue in VENUES:
        assert sorted(EXECUTED[venue](market.fakes[venue])) == sorted(reported[venue]), venue
