"""Coinbase Advanced Trade request signing: one CDP JWT per request, ES256 or EdDSA.

A CDP API key is a name (`organizations/{org}/apiKeys/{id}`) and a private key:
an EC P-256 key in PEM (signed with ES256) or an Ed25519 key, in PKCS#8 PEM or
as the raw base64 string the CDP portal hands out (32-byte seed, or 64 bytes of
seed + public key; signed with EdDSA). Every request carries its own token::

    Authorization: Bearer <base64url(header)>.<base64url(claims)>.<base64url(signature)>
    header = {"alg": "ES256" | "EdDSA", "kid": <key name>, "nonce": <random hex>, "typ": "JWT"}
    claims = {"sub": <key name>, "iss": "cdp", "nbf": <now, s>, "exp": <nbf + 120>,
              "uri": "<METHOD> <host><path>"}            # path only: no query string

Sources: EXCHANGES-TRADING.md §3.3 (docs.cdp.coinbase.com, the official SDK's
`coinbase/jwt_generator.py` v1.8.4). ES256 signatures are the 64-byte `r || s`
of RFC 7518 §3.4, not DER. There is no official test vector: ES256 is
randomised, so tests verify tokens with the public key; Ed25519 is
deterministic, so a locally pinned vector guards the encoding.

`nbf` comes from the venue's clock as we measured it, so a skewed local clock
does not produce tokens the venue finds expired or not yet valid. The token's
life (`JWT_LIFETIME_S`) is also the order's acceptance window: a request that
reaches Coinbase after its token expired is refused unauthenticated, so an
order sent at `t` can no longer be accepted after `t + 120 s`.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from typing import Final, Literal

import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

JWT_LIFETIME_S: Final = 120
ISSUER: Final = "cdp"
Algorithm = Literal["ES256", "EdDSA"]
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class CredentialsError(ValueError):
    """The key name or private key cannot be used; the message never quotes either."""


@dataclass(frozen=True, slots=True, repr=False)
class CoinbaseCredentials:
    """A CDP API key name and its private key (PEM or raw Ed25519 base64); never printed."""

    key_name: str
    private_key: str
    _key: PrivateKey = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not self.key_name.strip():
            raise CredentialsError("coinbase credentials: the API key name is empty")
        object.__setattr__(self, "_key", load_private_key(self.private_key))

    def __repr__(self) -> str:
        return f"CoinbaseCredentials(<redacted>, algorithm={self.algorithm})"

    @property
    def algorithm(self) -> Algorithm:
        """Return the JWT algorithm this key signs with."""
        return "EdDSA" if isinstance(self._key, ed25519.Ed25519PrivateKey) else "ES256"

    @property
    def key(self) -> PrivateKey:
        """Return the loaded private key."""
        return self._key

    def values(self) -> tuple[str, ...]:
        """Return every secret string, for scrubbing text that might quote one."""
        lines = [line.strip() for line in self.private_key.splitlines()]
        body = tuple(line for line in lines if line and not line.startswith("-----"))
        return (self.key_name, self.private_key.strip(), *body)


def load_private_key(text: str) -> PrivateKey:
    """Load an EC P-256 (PEM) or Ed25519 (PEM or raw base64 seed) private key."""
    data = text.strip()
    if not data:
        raise CredentialsError("coinbase credentials: the private key is empty")
    if data.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise CredentialsError("coinbase credentials: the private key PEM cannot be read") from None
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            return key
        raise CredentialsError("coinbase credentials: the key must be EC P-256 (ES256) or Ed25519 (EdDSA)")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise CredentialsError("coinbase credentials: the private key is neither PEM nor base64") from None
    if len(raw) not in (32, 64):
        raise CredentialsError("coinbase credentials: a raw Ed25519 key must be 32 or 64 bytes")
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])


def b64url(data: bytes) -> str:
    """Return unpadded base64url text (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt_uri(method: str, host: str, path: str) -> str:
    """Return the `uri` claim: method, a space, then host and path without the query string."""
    return f"{method.upper()} {host}{path.split('?', 1)[0]}"


def build_jwt(
    credentials: CoinbaseCredentials,
    uri: str,
    now_s: int,
    *,
    nonce: str | None = None,
    lifetime_s: int = JWT_LIFETIME_S,
) -> str:
    """Return a signed JWT for one request to `uri`, valid from `now_s` for `lifetime_s` seconds."""
    header = {
        "alg": credentials.algorithm,
        "kid": credentials.key_name,
        "nonce": secrets.token_hex(16) if nonce is None else nonce,
        "typ": "JWT",
    }
    claims = {
        "sub": credentials.key_name,
        "iss": ISSUER,
        "nbf": now_s,
        "exp": now_s + lifetime_s,
        "uri": uri,
    }
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}"
    return f"{signing_input}.{b64url(_sign(credentials.key, signing_input.encode('ascii')))}"


def _sign(key: PrivateKey, message: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")
