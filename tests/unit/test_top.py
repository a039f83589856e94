"""smartroute top's rendering: what the operator sees for a given /status and opportunity stream."""

from __future__ import annotations

from rich.console import Console

from daemon.top import render

STATUS = {
    "mode": "paper",
    "max_quote_age_ms": 1500,
    "halted": False,
    "venues": {
        "binance": {"state": "streaming", "connects": 1, "quote_age_ms": {"BTC-USDT": 12.5}},
        "bybit": {"state": "backoff", "connects": 3, "quote_age_ms": {"BTC-USDT": 4000.0}},
    },
    "quotes": {
        "BTC-USDT": {
            "binance": {"bid": "64000.1", "ask": "64000.2", "bid_qty": "1", "ask_qty": "1", "age_ms": 12.5},
            "bybit": {"bid": "64100", "ask": "64100.5", "bid_qty": "1", "ask_qty": "1", "age_ms": 4000.0},
        },
        "ETH-USDT": {"bybit": {"bid": "3200", "ask": "3201", "bid_qty": "1", "ask_qty": "1", "age_ms": 9000}},
    },
    "cache": {"entries": 3, "hits": 10, "misses": 2, "expirations": 1},
}
EVENT = {
    "event": "opened", "symbol": "BTC-USDT", "buy_venue": "binance", "buy_price": "64000.2",
    "sell_venue": "okx", "sell_price": "64210", "quantity": "0.15", "net_profit": "11.2",
    "net_spread_bps": "11.7",
}  # fmt: skip


def screen(*args: object) -> str:
    console = Console(record=True, width=160)
    console.print(render(*args))  # type: ignore[arg-type]
    return console.export_text()


def test_top_shows_venue_states_fresh_best_prices_and_opportunities() -> None:
    text = screen(STATUS, [EVENT])
    assert "trading" in text and "HALTED" not in text
    assert "binance" in text and "streaming" in text and "backoff" in text
    # bybit's better bid is 4 s old: only the fresh binance quote makes the best prices.
    rows = [line for line in text.splitlines() if line.startswith("│")]
    btc_row = next(line for line in rows if "BTC-USDT" in line and "64000.1" in line)
    assert "64100" not in btc_row
    assert any("ETH-USDT" in line and "—" in line for line in rows)  # only a stale quote: nothing shown
    assert "opened" in text and "okx @ 64210" in text


def test_top_shows_a_halt_and_an_unreachable_daemon() -> None:
    assert "HALTED" in screen(STATUS | {"halted": True}, [])
    assert "daemon unreachable" in screen(None, [EVENT], "ConnectionRefusedError()")


def test_top_shows_figures_at_their_stated_precision_whatever_the_producer_sent() -> None:
    unrounded = EVENT | {
        "buy_price": "63970.82399989008718732094643",
        "sell_price": "64210.12345678912345",
        "net_profit": "49.1940422095449783656613",
        "net_spread_bps": "11.2189",
    }
    text = screen(STATUS, [unrounded])
    # Prices to 8 decimals at most, against the taker (buy up, sell down); money 8 decimals and bps
    # 2 decimals, both down: never better than what was sent.
    assert "binance @ 63970.82399990" not in text  # trailing zeros are not shown
    assert "binance @ 63970.8239999 " in text and "okx @ 64210.12345678 " in text
    assert "49.19404220" not in text and "49.1940422 " in text and "11.21 " in text
    assert "0899" not in text and "783656613" not in text
