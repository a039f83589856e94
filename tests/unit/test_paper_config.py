"""`[paper.balances.<venue>]` and the balance keys of `[router]`: read, refused naming the key, printed."""

from __future__ import annotations

import json
import re
from decimal import Decimal as D

import pytest

from daemon.config import ConfigError, build_config, redacted_view
from daemon.routing import RouterSections, build_balances, tradable_venues

VENUES = {"venues": {"binance": {"symbols": ["BTC-USDT"]}, "bybit": {"symbols": ["BTC-USDT"]}}}


def test_paper_balances_are_read_as_decimals_per_venue_and_asset_and_printed() -> None:
    raw = VENUES | {"paper": {"balances": {"binance": {"USDT": "100000", "BTC": 2}, "bybit": {"usdt": 5.5}}}}
    cfg = build_config(raw, {})
    assert cfg.paper.balances["binance"] == {"USDT": D("100000"), "BTC": D(2)}
    assert cfg.paper.balances["bybit"] == {"USDT": D("5.5")}  # an override arrives lower-cased
    view = json.loads(json.dumps(redacted_view(cfg)))
    assert view["paper"] == {
        "balances": {"binance": {"USDT": "100000", "BTC": "2"}, "bybit": {"USDT": "5.5"}}
    }
    assert build_config(view, {}) == cfg


def test_an_environment_override_sets_a_paper_balance() -> None:
    cfg = build_config(VENUES, {"SMARTROUTE_PAPER__BALANCES__BINANCE__USDT": "250"})
    assert cfg.paper.balances["binance"] == {"USDT": D(250)}


@pytest.mark.parametrize(
    ("balances", "error"),
    [
        ({"binance": {"USDT": "-1"}}, "paper.balances.binance.USDT: must be a finite decimal number ≥ 0"),
        ({"binance": {"USDT": "lots"}}, "paper.balances.binance.USDT: must be a finite decimal number ≥ 0"),
        ({"binance": {"US-DT": "1"}}, 'paper.balances.binance.US-DT: must be an asset code like "USDT"'),
        ({"binance": {"USDT": "1", "usdt": "2"}}, "paper.balances.binance.usdt: names the asset USDT twice"),
        ({"mtgox": {"USDT": "1"}}, "paper.balances.mtgox: unknown venue"),
        ({"binance": "USDT"}, "paper.balances.binance: must be a table"),
    ],
)
def test_a_bad_paper_balance_refuses_to_start_naming_the_key(balances: object, error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        build_config(VENUES | {"paper": {"balances": balances}}, {})


def test_paper_balances_for_some_trading_venues_but_not_all_refuse_to_start() -> None:
    cfg = build_config(VENUES | {"paper": {"balances": {"binance": {"USDT": "1"}}}}, {})
    with pytest.raises(ConfigError, match=re.escape("paper.balances.bybit: missing")):
        build_balances(RouterSections.of(cfg), tradable_venues(cfg.venues), None)


def test_without_paper_balances_no_venue_is_tracked_and_with_them_each_starts_from_its_table() -> None:
    cfg = build_config(VENUES, {})
    book, sync = build_balances(RouterSections.of(cfg), tradable_venues(cfg.venues), None)
    assert sync is None and book.available("binance", "USDT") is None
    raw = VENUES | {"paper": {"balances": {"binance": {"USDT": "7"}, "bybit": {"BTC": "1"}}}}
    cfg = build_config(raw, {})
    book, _ = build_balances(RouterSections.of(cfg), tradable_venues(cfg.venues), None)
    assert book.available("binance", "USDT") == D(7) and book.available("binance", "BTC") == 0
    assert book.available("bybit", "BTC") == D(1)


def test_router_balance_keys_are_validated() -> None:
    cfg = build_config({"router": {"balance_refresh_ms": 5000, "balance_tolerance_bps": "2.5"}}, {})
    assert (cfg.router.balance_refresh_ms, cfg.router.balance_tolerance_bps) == (5000, D("2.5"))
    with pytest.raises(ConfigError, match=re.escape("router.balance_refresh_ms: must be an integer ≥ 1000")):
        build_config({"router": {"balance_refresh_ms": 10}}, {})
    with pytest.raises(ConfigError, match=re.escape("router.balance_tolerance_bps: must be ≤ 10000 bps")):
        build_config({"router": {"balance_tolerance_bps": 20000}}, {})
