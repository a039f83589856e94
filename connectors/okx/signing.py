"""OKX v5 REST signing: the credentials, the timestamp format and the four auth headers.

Source: https://www.okx.com/docs-v5/en/#overview-rest-authentication (stored copy 2026-07-21).

    OK-ACCESS-SIGN = Base64(HMAC_SHA256(secret, timestamp + METHOD + requestPath + body))

- `timestamp` is the OK-ACCESS-TIMESTAMP header: ISO 8601 UTC with milliseconds,
  e.g. `2020-12-08T09:08:57.715Z`; OKX refuses one more than 30 s off its clock (50102).
- `METHOD` is upper case; `requestPath` includes the query string for a GET
  (`/api/v5/account/balance?ccy=BTC`); `body` is the exact JSON text sent ("" for a GET).
- Demo trading: the same signature, plus the header `x-simulated-trading: 1`
  (https://www.okx.com/docs-v5/en/#overview-demo-trading-services).

The docs print no output for their sample secret, so the unit tests pin values
derived from it (`/work/shared/EXCHANGES-TRADING.md` §2.3), not official vectors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

TIMESTAMP_WINDOW_MS: Final = 30_000  # "differs from server time by more than 30 seconds (error 50102)"
SIMULATED_HEADER: Final = "x-simulated-trading"


@dataclass(frozen=True, slots=True, repr=False)
class OkxCredentials:
    """An OKX API key with its secret and passphrase; never printed."""

    api_key: str
    api_secret: str
    passphrase: str

    def __post_init__(self) -> None:
        for name in ("api_key", "api_secret", "passphrase"):
            if not getattr(self, name):
                raise ValueError(f"okx credentials: the {name.replace('_', ' ')} is empty")

    def __repr__(self) -> str:
        return "OkxCredentials(<redacted>)"

    def values(self) -> tuple[str, ...]:
        """Return every secret string, for scrubbing text that might quote one."""
        return (self.api_key, self.api_secret, self.passphrase)


def iso_timestamp(epoch_ms: int) -> str:
    """Return the OK-ACCESS-TIMESTAMP form of a Unix time in ms: `2020-12-08T09:08:57.715Z`."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z"


def sign(secret: str, timestamp: str, method: str, request_path: str, body: str) -> str:
    """Return OK-ACCESS-SIGN: Base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath + body))."""
    prehash = f"{timestamp}{method.upper()}{request_path}{body}"
    digest = hmac.new(secret.encode(), prehash.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def auth_headers(
    credentials: OkxCredentials,
    *,
    epoch_ms: int,
    method: str,
    request_path: str,
    body: str,
    simulated: bool,
) -> dict[str, str]:
    """Return the signed headers of one private request (`request_path` with its `?query`)."""
    timestamp = iso_timestamp(epoch_ms)
    headers = {
        "OK-ACCESS-KEY": credentials.api_key,
        "OK-ACCESS-SIGN": sign(credentials.api_secret, timestamp, method, request_path, body),
        "OK-ACCESS-TIMESTAMP": timestamp,
        "OK-ACCESS-PASSPHRASE": credentials.passphrase,
        "Content-Type": "application/json",
    }
    if simulated:
        headers[SIMULATED_HEADER] = "1"
    return headers
