"""OKX v5 private REST answers as the seam's values: pure parsers that raise only ParseError.

Each reads the `data` list of a successful answer (https://www.okx.com/docs-v5/en/):

- order details / orders-pending (`#order-book-trading-trade-get-order-details`):
  `{"instId":"BTC-USDT","ordId":"680800019749904384","clOrdId":"...","side":"buy","px":"51858",
  "sz":"0.002","accFillSz":"0.00192834","avgPx":"51858","state":"filled","cTime":"1708587373361",...}`
  (`avgPx` is "" when nothing filled; states live, partially_filled, filled, canceled, mmp_canceled);
- fills (`#order-book-trading-trade-get-transaction-details-last-3-days`):
  `{"tradeId":"...","ordId":"...","billId":"...","fillPx":"51858","fillSz":"0.001","fee":"-0.000001",
  "feeCcy":"BTC","fillTime":"1708587373361","ts":"1708587373362",...}` — "The trading fee deduction
  is negative ... the rebate is positive", so the seam's fee (positive = charged) is `-fee`;
- balance (`#trading-account-rest-api-get-balance`): `[{"details":[{"ccy":"USDT","availBal":"...",
  "frozenBal":"..."}]}]`;
- fee rates (`#trading-account-rest-api-get-fee-rates`): `[{"feeGroup":[{"groupId":"1",
  "taker":"-0.001","maker":"-0.0008"}],"taker":"-0.001","takerUSDC":"...",...}]` — "positive number,
  which means the rate of rebate; negative number, which means the rate of commission", so the taker
  fee in bps is `-taker × 10000`; the top-level `taker`/`takerUSDC` are deprecated fallbacks;
- instruments (`#public-data-rest-api-get-instruments`): `{"instId":"BTC-USDT","baseCcy":"BTC",
  "quoteCcy":"USDT","tickSz":"0.1","lotSz":"0.00000001","minSz":"0.00001","maxLmtSz":"...","state":"live"}`;
- system time (`#public-data-rest-api-get-system-time`): `[{"ts":"1597026383085"}]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from connectors.base import decimal_of, field, signed_decimal_of
from connectors.errors import ParseError
from connectors.symbols import split_symbol
from connectors.trading import AccountBalance, OrderReport, SymbolRules, TradeFill
from connectors.types import BPS, Side

OPEN_STATES: Final = frozenset({"live", "partially_filled"})
KNOWN_STATES: Final = OPEN_STATES | {"filled", "canceled", "mmp_canceled"}
_ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One spot instrument: its rules and its fee group (`groupId`, "" when OKX gives none)."""

    rules: SymbolRules
    group_id: str


def first(data: list[Any], where: str) -> dict[str, Any]:
    """Return the single object of a `data` list that must hold one."""
    if len(data) != 1 or not isinstance(data[0], dict):
        raise ParseError(f"okx {where}: 'data' must hold one object, got {len(data)} items")
    return data[0]


def parse_server_time(data: list[Any]) -> int:
    """Return the venue time in ms from a system-time answer."""
    return _int(first(data, "time").get("ts"), "okx time ts")


def parse_order(item: object, inst_id: str) -> OrderReport:
    """Return an order of `inst_id` (canonical symbol and OKX instId are the same text)."""
    if not isinstance(item, dict):
        raise ParseError(f"okx order: must be an object, got {item!r}")
    where = f"okx order {item.get('ordId')!r}"
    if item.get("instId") != inst_id:
        raise ParseError(f"{where}: instId {item.get('instId')!r} is not the {inst_id} asked about")
    state = field(item, "state", str, where)
    if state not in KNOWN_STATES:
        raise ParseError(f"{where}: unknown state {state!r}")
    executed = decimal_of(item.get("accFillSz"), f"{where} accFillSz")
    average = _optional_decimal(item.get("avgPx"), f"{where} avgPx")
    if executed > 0 and average is None:
        raise ParseError(f"{where}: {executed} filled without an average price")
    return OrderReport(
        symbol=inst_id,
        venue_order_id=field(item, "ordId", str, where),
        client_order_id=field(item, "clOrdId", str, where),
        side=_side(item.get("side"), where),
        status=state,
        is_open=state in OPEN_STATES,
        price=_optional_decimal(item.get("px"), f"{where} px") or _ZERO,
        orig_qty=decimal_of(item.get("sz"), f"{where} sz"),
        executed_qty=executed,
        cumulative_quote_qty=executed * (average or _ZERO),
        time_ms=_int(item.get("cTime"), f"{where} cTime"),
    )


@dataclass(frozen=True, slots=True)
class FillRow:
    """One row of a fills list: the execution, and the bill and orders it belongs to."""

    bill_id: str
    venue_order_id: str
    client_order_id: str
    fill: TradeFill


def parse_fills(data: list[Any], inst_id: str) -> list[FillRow]:
    """Return the executions listed on `inst_id`, as listed (newest first)."""
    rows = []
    for item in data:
        if not isinstance(item, dict):
            raise ParseError(f"okx fill: must be an object, got {item!r}")
        where = f"okx fill {item.get('tradeId')!r}"
        if item.get("instId") != inst_id:
            raise ParseError(f"{where}: belongs to {item.get('instId')!r}, not {inst_id}")
        fee = signed_decimal_of(item.get("fee"), f"{where} fee")
        fill = TradeFill(
            trade_id=field(item, "tradeId", str, where),
            price=decimal_of(item.get("fillPx"), f"{where} fillPx"),
            quantity=decimal_of(item.get("fillSz"), f"{where} fillSz"),
            fee=-fee,  # OKX: a charge is negative, a rebate positive; the seam: charged is positive
            fee_asset=field(item, "feeCcy", str, where).upper(),
            time_ms=_int(item.get("fillTime") or item.get("ts"), f"{where} fillTime"),
        )
        client_id = item.get("clOrdId")
        rows.append(
            FillRow(
                bill_id=field(item, "billId", str, where),
                venue_order_id=field(item, "ordId", str, where),
                client_order_id=client_id if isinstance(client_id, str) else "",
                fill=fill,
            )
        )
    return rows


def parse_balances(data: list[Any]) -> dict[str, AccountBalance]:
    """Return the trading account's balances by upper-case currency."""
    details = field(first(data, "balance"), "details", list, "okx balance")
    balances: dict[str, AccountBalance] = {}
    for item in details:
        if not isinstance(item, dict):
            raise ParseError(f"okx balance detail: must be an object, got {item!r}")
        asset = field(item, "ccy", str, "okx balance detail").upper()
        balances[asset] = AccountBalance(
            asset=asset,
            free=decimal_of(item.get("availBal"), f"okx balance {asset} availBal"),
            locked=decimal_of(item.get("frozenBal"), f"okx balance {asset} frozenBal"),
        )
    return balances


def parse_taker_fee_bps(data: list[Any], group_id: str, quote: str) -> Decimal | None:
    """Return the taker fee in bps (positive = charged) for the instrument's fee group, or None.

    `feeGroup[]` is read first (the entry of the instrument's `groupId`, or the only
    entry); without it, the deprecated top-level `taker` (USDT pairs) or `takerUSDC`.
    """
    item = first(data, "trade-fee")
    groups = item.get("feeGroup")
    rate: object = None
    if isinstance(groups, list) and groups:
        chosen = [g for g in groups if isinstance(g, dict) and g.get("groupId") == group_id]
        if not chosen and len(groups) == 1 and isinstance(groups[0], dict):
            chosen = [groups[0]]
        if len(chosen) != 1:
            return None  # several groups and none named for this instrument: cannot tell
        rate = chosen[0].get("taker")
    else:
        rate = item.get("taker" if quote == "USDT" else "takerUSDC")
    if rate in (None, ""):
        return None
    return -signed_decimal_of(rate, "okx trade-fee taker") * BPS


def parse_instruments(data: list[Any]) -> tuple[dict[str, Instrument], list[str]]:
    """Return the spot instruments by instId (the canonical symbol), and the ids of those skipped.

    One listing that does not read as a BASE-QUOTE spot instrument is skipped, not fatal:
    it must not stop trading on every other symbol.
    """
    instruments: dict[str, Instrument] = {}
    skipped: list[str] = []
    for item in data:
        try:
            inst_id, instrument = _instrument(item)
        except ParseError:
            skipped.append(str(item.get("instId")) if isinstance(item, dict) else repr(item)[:40])
            continue
        instruments[inst_id] = instrument
    return instruments, skipped


def _instrument(item: object) -> tuple[str, Instrument]:
    if not isinstance(item, dict):
        raise ParseError(f"okx instrument: must be an object, got {item!r}")
    inst_id = field(item, "instId", str, "okx instrument")
    where = f"okx instrument {inst_id}"
    base, quote = field(item, "baseCcy", str, where), field(item, "quoteCcy", str, where)
    try:
        if split_symbol(inst_id) != (base, quote):
            raise ParseError(f"{where}: baseCcy/quoteCcy {base}/{quote} do not spell the instId")
    except ValueError as exc:
        raise ParseError(f"{where}: not a BASE-QUOTE spot instrument") from exc
    rules = SymbolRules(
        venue_symbol=inst_id,
        base_asset=base,
        quote_asset=quote,
        tradable=item.get("state") == "live",
        tick_size=decimal_of(item.get("tickSz"), f"{where} tickSz"),
        step_size=decimal_of(item.get("lotSz"), f"{where} lotSz"),
        min_qty=decimal_of(item.get("minSz"), f"{where} minSz"),
        max_qty=_optional_decimal(item.get("maxLmtSz"), f"{where} maxLmtSz") or _ZERO,
    )
    group = item.get("groupId")
    return inst_id, Instrument(rules, group if isinstance(group, str) else "")


def _side(value: object, where: str) -> Side:
    if value == "buy":
        return "buy"
    if value == "sell":
        return "sell"
    raise ParseError(f"{where}: side must be buy or sell, got {value!r}")


def _optional_decimal(value: object, name: str) -> Decimal | None:
    return None if value in (None, "") else decimal_of(value, name)


def _int(value: object, name: str) -> int:
    if not isinstance(value, str) or not value.isdigit():
        raise ParseError(f"{name} must be a string of digits, got {value!r}")
    return int(value)
