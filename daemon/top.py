"""`smartroute top`: what an operator looks at first — venues, best prices with ages, opportunities.

It polls a running daemon's `/status` (one HTTP GET per refresh) and follows
`smartroute.opportunities` from its end; it never talks to an exchange.

Figures are shown as `router.precision` publishes them, and a message from a
producer that did not round is rounded the same way for the screen: prices to at
most 8 decimals (a buy's up, a sell's down), money to 8 decimals down, bps to 2
decimals down. Trailing zeros are not shown.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from decimal import ROUND_DOWN, Context, Decimal, InvalidOperation
from typing import Any

import aiohttp
import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from connectors.types import Side, decimal_text
from daemon.config import KafkaConfig
from daemon.kafka import new_consumer
from router.precision import bps_down, money_down, round_price

_STATE_STYLE = {
    "streaming": "green",
    "connecting": "yellow",
    "backoff": "red",
    "stopped": "red",
    "idle": "dim",
}
_RECENT = 12
_PRICE_STEP = Decimal("1e-8")
_WIDE = Context(prec=80)


def _decimal(value: object) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _price(value: object, side: Side) -> str:
    """Return a price for the screen: at most 8 decimals, rounded against the taker."""
    number = _decimal(value)
    if number is None:
        return str(value)
    if number != number.quantize(_PRICE_STEP, rounding=ROUND_DOWN, context=_WIDE):
        number = round_price(number, _PRICE_STEP, side)
    return decimal_text(number)


def _money(value: object) -> str:
    number = _decimal(value)
    return str(value) if number is None else decimal_text(money_down(number))


def _bps(value: object) -> str:
    number = _decimal(value)
    return str(value) if number is None else decimal_text(bps_down(number))


def _age(age_ms: object, max_age_ms: float) -> Text:
    if not isinstance(age_ms, int | float):
        return Text("—", style="dim")
    style = "green" if age_ms <= max_age_ms / 3 else "yellow" if age_ms <= max_age_ms else "red"
    return Text(f"{age_ms:,.0f} ms", style=style)


def _is_fresh(age_ms: object, max_age_ms: float) -> bool:
    return isinstance(age_ms, int | float) and age_ms <= max_age_ms


def venues_table(status: Mapping[str, Any]) -> Table:
    """Return one row per venue: connection state, reconnects, symbols and their quote ages."""
    table = Table(title="venues", expand=True)
    for column in ("venue", "state", "connects", "symbols (quote age)"):
        table.add_column(column)
    max_age = float(status.get("max_quote_age_ms", 1500))
    for venue, info in sorted(status.get("venues", {}).items()):
        state = str(info.get("state", "?"))
        ages = Text()
        for symbol, age in sorted(info.get("quote_age_ms", {}).items()):
            ages.append(f"{symbol} ")
            ages.append_text(_age(age, max_age))
            ages.append("  ")
        table.add_row(
            venue, Text(state, style=_STATE_STYLE.get(state, "")), str(info.get("connects", 0)), ages
        )
    return table


def prices_table(status: Mapping[str, Any]) -> Table:
    """Return the best bid and ask per symbol across venues, each with its venue and age."""
    table = Table(title="best prices across venues (fresh quotes only)", expand=True)
    for column in ("symbol", "best bid", "venue", "age", "best ask", "venue", "age", "spread bps"):
        table.add_column(column, justify="right" if column not in ("symbol", "venue") else "left")
    max_age = float(status.get("max_quote_age_ms", 1500))
    for symbol, venues in sorted(status.get("quotes", {}).items()):
        fresh = {
            v: q
            for v, q in venues.items()
            if isinstance(q.get("age_ms"), int | float) and q["age_ms"] <= max_age
        }
        if not fresh:
            table.add_row(symbol, *(["—"] * 7))
            continue
        bid_venue = max(fresh, key=lambda v: Decimal(fresh[v]["bid"]))
        ask_venue = min(fresh, key=lambda v: Decimal(fresh[v]["ask"]))
        bid, ask = Decimal(fresh[bid_venue]["bid"]), Decimal(fresh[ask_venue]["ask"])
        spread = (ask - bid) / ask * 10_000
        table.add_row(
            symbol,
            decimal_text(bid),
            bid_venue,
            _age(fresh[bid_venue]["age_ms"], max_age),
            decimal_text(ask),
            ask_venue,
            _age(fresh[ask_venue]["age_ms"], max_age),
            Text(f"{spread:.2f}", style="bold magenta" if spread < 0 else ""),
        )
    return table


def opportunities_table(events: list[Mapping[str, Any]]) -> Table:
    """Return the latest opportunity events, newest first."""
    table = Table(title="latest opportunities", expand=True)
    for column in ("event", "symbol", "buy", "sell", "quantity", "net profit", "net bps"):
        table.add_column(
            column, justify="right" if column in ("quantity", "net profit", "net bps") else "left"
        )
    for event in reversed(events):
        style = {"opened": "green", "closed": "dim"}.get(str(event.get("event")), "")
        table.add_row(
            Text(str(event.get("event")), style=style),
            str(event.get("symbol")),
            f"{event.get('buy_venue')} @ {_price(event.get('buy_price'), 'buy')}",
            f"{event.get('sell_venue')} @ {_price(event.get('sell_price'), 'sell')}",
            str(event.get("quantity")),
            _money(event.get("net_profit")),
            _bps(event.get("net_spread_bps")),
        )
    return table


def render(
    status: Mapping[str, Any] | None, events: list[Mapping[str, Any]], error: str | None = None
) -> Group:
    """Return the whole screen for one refresh."""
    if status is None:
        header = Text(f"daemon unreachable: {error}", style="bold red")
        return Group(header, opportunities_table(events))
    halted = status.get("halted")
    header = Text(f"smartroute — mode {status.get('mode')}  ")
    header.append("HALTED" if halted else "trading", style="bold red" if halted else "bold green")
    cache = status.get("cache", {})
    header.append(f"   cache: {cache.get('entries', 0)} entries, {cache.get('hits', 0)} hits, ")
    header.append(f"{cache.get('misses', 0)} misses, {cache.get('expirations', 0)} expirations")
    return Group(header, venues_table(status), prices_table(status), opportunities_table(events))


async def fetch_status(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """GET the daemon's /status."""
    async with session.get(f"{url.rstrip('/')}/status", timeout=aiohttp.ClientTimeout(total=2)) as response:
        response.raise_for_status()
        status: dict[str, Any] = orjson.loads(await response.read())
        return status


async def run_top(
    kafka: KafkaConfig, url: str, stop: asyncio.Event, *, refresh_s: float = 1.0, once: bool = False
) -> None:
    """Refresh the view until `stop` (or once, printed plainly, for scripts)."""
    events: deque[Mapping[str, Any]] = deque(maxlen=_RECENT)
    consumer = new_consumer(kafka, kafka.topic("opportunities"), offsets="latest")
    console = Console()
    await consumer.start()
    try:
        async with aiohttp.ClientSession() as session:
            with Live(console=console, auto_refresh=False, transient=once) as live:
                while True:
                    try:
                        status, error = await fetch_status(session, url), None
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        status, error = None, repr(exc)
                    batches = await consumer.getmany(timeout_ms=int(refresh_s * 1000))
                    events.extend(orjson.loads(r.value) for rs in batches.values() for r in rs if r.value)
                    view = render(status, list(events), error)
                    if once:
                        break
                    live.update(view, refresh=True)
                    if stop.is_set():
                        return
            console.print(view)
    finally:
        await consumer.stop()
