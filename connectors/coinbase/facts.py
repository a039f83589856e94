"""Coinbase Advanced Trade's endpoints, tier-0 fees, client order ids, and why it has no testnet."""

from decimal import Decimal
from typing import Final

from connectors.facts import VenueFacts

FACTS: Final = VenueFacts(
    venue="coinbase",
    ws_url="wss://advanced-trade-ws.coinbase.com",
    rest_url="https://api.coinbase.com",
    taker_fee_bps=Decimal(120),
    maker_fee_bps=Decimal(60),
    client_id_style="uuid36",  # client_order_id: the SDKs send UUIDs
    no_testnet=(
        "Coinbase's sandbox is a static mock (canned answers, no /products or /time, no signing "
        "check): it cannot run the daemon; test with small live orders"
    ),
)
