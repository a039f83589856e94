"""OKX answers: what each documented code means to the daemon, and the documented payloads parsed exactly."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from connectors.errors import (
    ClockRejected,
    DuplicateOrder,
    OrderNotFound,
    OutcomeUnknown,
    ParseError,
    RateLimited,
    VenueBanned,
    VenueConnectionError,
    VenueRejected,
)
from connectors.okx.trading_errors import Refusal, error_for, read_answer
from connectors.okx.trading_payloads import (
    parse_balances,
    parse_fills,
    parse_instruments,
    parse_order,
    parse_taker_fee_bps,
)
from connectors.rest import RestResponse

D = Decimal

# https://www.okx.com/docs-v5/en/#order-book-trading-trade-get-order-details, response example.
DOC_ORDER = {
    "accFillSz": "0.00192834", "algoClOrdId": "", "algoId": "", "attachAlgoClOrdId": "", "attachAlgoOrds": [],
    "avgPx": "51858", "cTime": "1708587373361", "cancelSource": "", "cancelSourceReason": "",
    "category": "normal", "ccy": "", "clOrdId": "", "fee": "-0.00000192834", "feeCcy": "BTC",
    "fillPx": "51858", "fillSz": "0.00192834", "fillTime": "1708587373361", "instId": "BTC-USDT",
    "instType": "SPOT", "isTpLimit": "false", "lever": "", "linkedAlgoOrd": {"algoId": ""},
    "ordId": "680800019749904384", "ordType": "market", "pnl": "0", "posSide": "net", "px": "", "pxType": "",
    "pxUsd": "", "pxVol": "", "quickMgnType": "", "rebate": "0", "rebateCcy": "USDT", "reduceOnly": "false",
    "side": "buy", "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "", "source": "", "state": "filled",
    "stpId": "", "stpMode": "", "sz": "100", "tag": "", "tdMode": "cash", "tgtCcy": "quote_ccy",
    "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "", "tradeId": "744876980", "tradeQuoteCcy": "USDT",
    "uTime": "1708587373362",
}  # fmt: skip
# https://www.okx.com/docs-v5/en/#trading-account-rest-api-get-fee-rates, response example.
DOC_FEE = {
    "category": "1", "delivery": "", "exercise": "", "feeGroup": [{"groupId": "1", "maker": "-0.0008",
    "taker": "-0.001"}], "fiat": [], "instType": "SPOT", "level": "Lv1", "maker": "-0.0008", "makerU": "",
    "makerUSDC": "", "ruleType": "normal", "taker": "-0.001", "takerU": "", "takerUSDC": "",
    "ts": "1763979985847",
}  # fmt: skip
# https://www.okx.com/docs-v5/en/#order-book-trading-trade-post-place-order, response example
# (also /work/shared/exchange-samples/okx-place-order-response.json).
DOC_PLACED = {
    "code": "0", "msg": "",
    "data": [{"clOrdId": "oktswap6", "ordId": "312269865356374016", "tag": "", "ts": "1695190491421",
              "sCode": "0", "sMsg": "", "subCode": ""}],
    "inTime": "1695190491421339", "outTime": "1695190491423240",
}  # fmt: skip


def answer(payload: Any, status: int = 200) -> RestResponse:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return RestResponse(status, {}, body)


def test_the_documented_placement_answer_is_a_success_with_its_order_id() -> None:
    refusal, data = read_answer(answer(DOC_PLACED), per_order=True)
    assert refusal is None and data[0]["ordId"] == "312269865356374016"


@pytest.mark.parametrize(
    ("payload", "status", "expected"),
    [
        # a per-order refusal inside HTTP 200: the sCode is the reason
        ({"code": "1", "msg": "All operations failed",
          "data": [{"clOrdId": "a", "ordId": "", "sCode": "51016",
                    "sMsg": "Client order ID already exists."}]},
         200, Refusal(200, "51016", "Client order ID already exists.")),
        # a request-level refusal: no per-order data
        ({"code": "50011", "msg": "Too Many Requests", "data": []}, 429,
         Refusal(429, "50011", "Too Many Requests")),
        # success without the per-order result: what happened cannot be told
        ({"code": "0", "msg": "", "data": []}, 200,
         Refusal(200, "", "success answer without a per-order result")),
        (b"<html>502 Bad Gateway</html>", 502, Refusal(502, "", "HTTP 502 without an OKX answer")),
    ],
)  # fmt: skip
def test_refusals_are_read_from_the_per_order_code_first(
    payload: Any, status: int, expected: Refusal
) -> None:
    assert read_answer(answer(payload, status), per_order=True) == (expected, [])


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("50004", 400, OutcomeUnknown), ("50001", 503, OutcomeUnknown), ("50013", 429, OutcomeUnknown),
        ("50026", 500, OutcomeUnknown), ("", 502, OutcomeUnknown), ("", 200, OutcomeUnknown),
        ("59999", 500, OutcomeUnknown),
        ("50011", 429, RateLimited), ("50011", 200, RateLimited), ("50061", 200, RateLimited),
        ("50040", 200, RateLimited),
        ("50007", 200, VenueBanned), ("50029", 200, VenueBanned), ("50100", 400, VenueBanned),
        ("50102", 401, ClockRejected), ("50112", 401, ClockRejected), ("50036", 200, ClockRejected),
        ("51603", 200, OrderNotFound), ("51400", 200, OrderNotFound),
        ("51016", 200, DuplicateOrder), ("50071", 200, DuplicateOrder),
        ("50113", 401, VenueRejected), ("51008", 200, VenueRejected), ("50037", 200, VenueRejected),
    ],
)  # fmt: skip
def test_each_documented_code_of_an_order_maps_to_its_meaning(code: str, status: int, error: type) -> None:
    mapped = error_for(
        Refusal(status, code, "m"), "place order", may_execute=True, now_s=100.0, backoff_s=2.0, ban_s=300.0
    )
    assert type(mapped) is error


def test_an_unknown_outcome_code_on_a_request_that_changes_nothing_is_just_a_failure() -> None:
    mapped = error_for(
        Refusal(400, "50004", "timeout"), "balance", may_execute=False, now_s=0, backoff_s=2, ban_s=1
    )
    assert type(mapped) is VenueConnectionError


def test_throttling_and_bans_carry_how_long_nothing_is_sent() -> None:
    limited = error_for(
        Refusal(429, "", "HTTP 429"), "balance", may_execute=False, now_s=0, backoff_s=2.5, ban_s=1
    )
    banned = error_for(
        Refusal(200, "50029", "x"), "balance", may_execute=False, now_s=100, backoff_s=2, ban_s=300
    )
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 2.5
    assert isinstance(banned, VenueBanned) and banned.until_s == 400


def test_the_documented_order_parses_to_the_seams_report() -> None:
    report = parse_order(DOC_ORDER, "BTC-USDT")
    assert (report.venue_order_id, report.side, report.status, report.is_open) == (
        "680800019749904384", "buy", "filled", False,
    )  # fmt: skip
    assert (report.executed_qty, report.cumulative_quote_qty, report.price, report.time_ms) == (
        D("0.00192834"), D("0.00192834") * D(51858), D(0), 1708587373361,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"instId": "ETH-USDT"}, "is not the BTC-USDT"),
        ({"state": "effective"}, "unknown state"),
        ({"avgPx": ""}, "without an average price"),
        ({"side": "long"}, "side must be buy or sell"),
    ],
)
def test_an_order_that_does_not_read_as_documented_is_a_parse_error(
    change: dict[str, str], message: str
) -> None:
    with pytest.raises(ParseError, match=message):
        parse_order(DOC_ORDER | change, "BTC-USDT")


def test_an_unfilled_order_has_no_average_price() -> None:
    report = parse_order(DOC_ORDER | {"accFillSz": "0", "avgPx": "", "state": "canceled"}, "BTC-USDT")
    assert (report.executed_qty, report.average_price, report.cumulative_quote_qty) == (D(0), None, D(0))


def test_a_charged_fee_is_positive_and_a_rebate_negative_in_the_seams_terms() -> None:
    base = {"instId": "BTC-USDT", "ordId": "1", "billId": "9", "tradeId": "7", "fillPx": "64000",
            "fillSz": "0.5", "feeCcy": "btc", "fillTime": "1708587373361", "ts": "1708587373362"}  # fmt: skip
    [charged_row] = parse_fills([base | {"fee": "-0.0005", "clOrdId": "abc"}], "BTC-USDT")
    [rebate_row] = parse_fills([base | {"fee": "0.0001"}], "BTC-USDT")
    charged, rebate = charged_row.fill, rebate_row.fill
    assert (charged.fee, charged.fee_asset, charged.quantity, charged.time_ms) == (
        D("0.0005"), "BTC", D("0.5"), 1708587373361,
    )  # fmt: skip
    assert (charged_row.bill_id, charged_row.venue_order_id, charged_row.client_order_id) == ("9", "1", "abc")
    assert rebate.fee == D("-0.0001") and rebate_row.client_order_id == ""
    with pytest.raises(ParseError, match="belongs to"):
        parse_fills([base | {"fee": "-1", "instId": "ETH-USDT"}], "BTC-USDT")


@pytest.mark.parametrize(
    ("item", "group", "quote", "bps"),
    [
        (DOC_FEE, "1", "USDT", D(10)),  # "negative number, which means the rate of commission"
        (DOC_FEE, "", "USDT", D(10)),  # one group: it is the instrument's
        (DOC_FEE | {"feeGroup": [{"groupId": "1", "taker": "-0.001"}, {"groupId": "2", "taker": "-0.002"}]},
         "2", "USDT", D(20)),
        (DOC_FEE | {"feeGroup": [{"groupId": "1", "taker": "-0.001"}, {"groupId": "2", "taker": "-0.002"}]},
         "", "USDT", None),  # several groups and none named: cannot tell
        (DOC_FEE | {"feeGroup": [{"groupId": "1", "taker": "0.00005"}]}, "1", "USDT", D("-0.5")),  # a rebate
        (DOC_FEE | {"feeGroup": []}, "", "USDT", D(10)),  # the deprecated top-level rate
        (DOC_FEE | {"feeGroup": [], "takerUSDC": "-0.0008"}, "", "USDC", D(8)),
        (DOC_FEE | {"feeGroup": []}, "", "USDC", None),
    ],
)  # fmt: skip
def test_the_taker_fee_is_the_negated_rate_in_bps(
    item: dict[str, Any], group: str, quote: str, bps: Any
) -> None:
    assert parse_taker_fee_bps([item], group, quote) == bps


def test_balances_are_free_and_frozen_by_currency() -> None:
    data = [{"details": [{"ccy": "USDT", "availBal": "4834.317093622894", "frozenBal": "158.573"}]}]
    usdt = parse_balances(data)["USDT"]
    assert (usdt.free, usdt.locked, usdt.total) == (
        D("4834.317093622894"),
        D("158.573"),
        D("4992.890093622894"),
    )


def test_an_instrument_that_is_not_base_quote_spot_is_skipped_not_fatal() -> None:
    good = {"instId": "BTC-EUR", "baseCcy": "BTC", "quoteCcy": "EUR", "tickSz": "1", "lotSz": "0.00000001",
            "minSz": "0.00001", "maxLmtSz": "9999999999", "state": "live"}  # fmt: skip
    odd = good | {"instId": "BTC-EUR-odd"}
    instruments, skipped = parse_instruments([good, odd, "junk"])
    assert list(instruments) == ["BTC-EUR"] and skipped[0] == "BTC-EUR-odd" and len(skipped) == 2
    rules = instruments["BTC-EUR"].rules
    assert (rules.tick_size, rules.step_size, rules.min_qty, rules.max_qty) == (
        D(1), D("0.00000001"), D("0.00001"), D(9999999999),
    )  # fmt: skip
