"""Binance Spot's endpoints, tier-0 fees, Spot Testnet and client order ids (EXCHANGES.md)."""

from decimal import Decimal
from typing import Final

from connectors.facts import Testnet, VenueFacts

TESTNET: Final = Testnet(
    ws_url="wss://stream.testnet.binance.vision",
    rest_url="https://testnet.binance.vision",
    trade_url="https://testnet.binance.vision",
)
FACTS: Final = VenueFacts(
    venue="binance",
    ws_url="wss://stream.binance.com:9443",
    rest_url="https://api.binance.com",
    taker_fee_bps=Decimal(10),
    maker_fee_bps=Decimal(10),
    client_id_style="hex32",  # newClientOrderId: up to 36 of [.A-Za-z0-9:/_-]
    testnet=TESTNET,
)
