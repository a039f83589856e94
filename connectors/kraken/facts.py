"""Kraken's endpoints, tier-0 fees, client order ids, verification tiers, and why it has no testnet."""

from decimal import Decimal
from typing import Final

from connectors.facts import VenueFacts
from connectors.kraken.private import TIERS

FACTS: Final = VenueFacts(
    venue="kraken",
    ws_url="wss://ws.kraken.com/v2",
    rest_url="https://api.kraken.com",
    taker_fee_bps=Decimal(40),
    maker_fee_bps=Decimal(25),
    client_id_style="uuid36",  # cl_ord_id: a UUID, a 32-hex short UUID, or free text up to 18
    no_testnet="Kraken has no spot sandbox; test with validate-only orders and small live orders",
    tiers=tuple(TIERS),  # starter first: the default when the config names none
)
