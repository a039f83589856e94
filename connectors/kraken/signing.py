"""Kraken spot REST authentication: the credentials, the `API-Sign` signature and the nonce.

https://docs.kraken.com/api/docs/guides/spot-rest-auth:

    API-Sign = base64( HMAC-SHA512( base64decode(secret), URI path + SHA256(nonce + POST data) ) )

where the URI path starts at `/0/private/...`, `nonce` is the value of the
`nonce` field and "POST data" is the exact encoded body (which holds that same
nonce). The docs' test vector reproduces byte for byte
(`tests/unit/test_kraken_signing.py`).

The nonce must be "always increasing, unsigned 64-bit": Kraken refuses one
that is not above the last nonce it accepted for the key (`EAPI:Invalid
nonce`). A client cannot persist its last nonce anywhere Kraken would see, so
`NonceSource` uses time: microseconds since the epoch, and never less than
the last value + 1. That is safe across restarts because a new process starts
at the wall clock, and the old one never ran ahead of the wall clock by more
than the number of requests it issued within one microsecond (each is a
whole HTTP round trip, so in practice never): any restart that takes longer
than that starts above every nonce ever sent. What would break it is the
wall clock stepping back by more than the restart took, or another program
signing with the same key using larger nonces; Kraken then refuses the
request before executing it (`EAPI:Invalid nonce` → ClockRejected), so the
failure is loud and never a double execution. Give smartroute its own key.
Microseconds also stay above every millisecond-based nonce (ccxt) that key
may have seen before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, repr=False)
class KrakenCredentials:
    """A Kraken API key and its base64 private key; never printed."""

    api_key: str
    api_secret: str

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("kraken credentials: the API key is empty")
        if not self.api_secret:
            raise ValueError("kraken credentials: the API secret is empty")
        try:
            base64.b64decode(self.api_secret, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("kraken credentials: the API secret is not valid base64") from None

    def __repr__(self) -> str:
        return "KrakenCredentials(<redacted>)"

    def values(self) -> tuple[str, ...]:
        """Return every secret string, for scrubbing text that might quote one."""
        return (self.api_key, self.api_secret)


def sign(secret_b64: str, path: str, nonce: str, post_data: str) -> str:
    """Return Kraken's `API-Sign` for a private request to `path` with body `post_data`."""
    inner = hashlib.sha256((nonce + post_data).encode()).digest()
    mac = hmac.new(base64.b64decode(secret_b64), path.encode() + inner, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


class NonceSource:
    """Strictly increasing nonces: microseconds of the wall clock, never below the last + 1."""

    def __init__(self, wall_us: Callable[[], int] | None = None) -> None:
        self._wall_us = wall_us or (lambda: time.time_ns() // 1000)
        self._last = 0

    def next(self) -> int:
        """Return a nonce above every nonce this source returned before."""
        self._last = max(self._last + 1, self._wall_us())
        return self._last
