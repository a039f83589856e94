"""OKX v5's endpoints, tier-0 fees, demo trading and client order ids (EXCHANGES.md)."""

from decimal import Decimal
from typing import Final

from connectors.facts import Testnet, VenueFacts

# Demo trading: demo streams, and orders carry `x-simulated-trading: 1` (its client adds it).
TESTNET: Final = Testnet(
    ws_url="wss://wspap.okx.com:8443/ws/v5/public",
    rest_url="https://www.okx.com",
    trade_url="https://openapi.okx.com",
)
FACTS: Final = VenueFacts(
    venue="okx",
    ws_url="wss://ws.okx.com:8443/ws/v5/public",
    rest_url="https://www.okx.com",
    taker_fee_bps=Decimal(10),
    maker_fee_bps=Decimal(8),
    client_id_style="hex32",  # clOrdId: 1-32 letters and digits only
    testnet=TESTNET,
)
