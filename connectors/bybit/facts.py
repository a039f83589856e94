"""Bybit v5 spot's endpoints, tier-0 fees, testnet and client order ids (EXCHANGES.md)."""

from decimal import Decimal
from typing import Final

from connectors.facts import Testnet, VenueFacts

TESTNET: Final = Testnet(
    ws_url="wss://stream-testnet.bybit.com/v5/public/spot",
    rest_url="https://api-testnet.bybit.com",
    trade_url="https://api-testnet.bybit.com",
)
FACTS: Final = VenueFacts(
    venue="bybit",
    ws_url="wss://stream.bybit.com/v5/public/spot",
    rest_url="https://api.bybit.com",
    taker_fee_bps=Decimal(10),
    maker_fee_bps=Decimal(10),
    client_id_style="hex32",  # orderLinkId: up to 36 letters, digits, - and _
    testnet=TESTNET,
)
