"""What an operator sees of positions, gross exposure and the loss limit: /status and the metrics."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from pathlib import Path

from prometheus_client import CollectorRegistry

from connectors.types import Quote
from daemon.app import Daemon
from daemon.config import build_config
from router.execution import Fill
from router.loss import register_risk_metrics


def test_status_and_metrics_show_positions_prices_exposure_and_todays_pnl(tmp_path: Path) -> None:
    cfg = build_config(
        {
            "daemon": {"state_dir": str(tmp_path), "http_port": 0},
            "risk": {"max_daily_loss": "500", "max_gross_exposure": "90000", "max_position": {"BTC": "3"}},
        },
        {},
    )
    daemon = Daemon(cfg)
    assert daemon.router is not None and daemon.router.loss is not None
    try:
        gate = daemon.router.router.risk
        now = daemon.router.loss.today()
        ts = int(dt.datetime(now.year, now.month, now.day, 1, tzinfo=dt.UTC).timestamp()) * 10**9
        for side, qty, price, venue in (("buy", "1", "60000", "binance"), ("sell", "0.4", "59000", "okx")):
            fill = Fill(venue, side, D(price), D(qty), D("1"), "USDT", "c", "v", ts)  # type: ignore[arg-type]
            gate.record_fill("BTC-USDT", fill)
        # a fresh BTC-USDT book: mid (60990 + 61010) / 2 = 61000
        daemon.cache.update(Quote("bybit", "BTC-USDT", D(60990), D(1), D(61010), D(1), None, 0, 1))

        risk = daemon.status()["risk"]
        # BTC: +1 on binance, -0.4 on okx → 0.6 × 61000 = 36600
        # PnL: 0.4 × (59000 - 60000) - 1 - 1 (fees) = -402
        assert risk["positions"]["BTC"] == {
            "net": "0.6",
            "venues": {"binance": "1", "okx": "-0.4"},
            "price": "61000",
            "price_stale": False,
            "value": "36600",
        }
        assert risk["positions"]["USDT"]["venues"] == {"binance": "-60001", "okx": "23599"}
        assert (risk["gross_exposure"], risk["valuation_currency"]) == ("36600", "USDT")
        assert (risk["realized_pnl_today"], risk["max_daily_loss"], risk["halt_below"]) == (
            "-402",
            "500",
            "-500",
        )
        assert risk["limits"] == {"max_gross_exposure": "90000", "max_position": {"BTC": "3"}}

        registry = CollectorRegistry()
        register_risk_metrics(gate.positions, daemon.router.loss, registry)
        sample = registry.get_sample_value
        assert sample("smartroute_position", {"asset": "BTC", "venue": "okx"}) == -0.4
        assert sample("smartroute_gross_exposure") == 36600
        assert sample("smartroute_realized_pnl_today") == -402
        assert sample("smartroute_loss_halt_floor") == -500
    finally:
        daemon.router.ledger.close()
