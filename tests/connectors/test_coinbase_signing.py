"""Coinbase CDP JWTs: the documented header and claims, signatures a public key verifies, keys never shown.

There is no official vector (EXCHANGES-TRADING.md §3.3): ES256 is randomised, so its
tokens are checked by decoding them and verifying with the public key (an
independent verifier below, not the signer's code); Ed25519 is deterministic, so
one token is pinned byte for byte to guard the encoding.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from connectors.coinbase.signing import (
    CoinbaseCredentials,
    CredentialsError,
    build_jwt,
    jwt_uri,
)

KEY_NAME = "organizations/0f0e-org/apiKeys/9a8b-key"
ED_SEED = bytes(range(32))
NOW = 1_800_000_000
# Pinned: the Ed25519 token of ED_SEED for this uri, time and nonce (computed once, kept as a guard).
ED_VECTOR = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6Im9yZ2FuaXphdGlvbnMvMGYwZS1vcmcvYXBpS2V5cy85YThiLWtleSIsIm5vbmNl"
    "IjoiMDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmYiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJvcmdhbml6YXRpb2"
    "5zLzBmMGUtb3JnL2FwaUtleXMvOWE4Yi1rZXkiLCJpc3MiOiJjZHAiLCJuYmYiOjE4MDAwMDAwMDAsImV4cCI6MTgwMDAw"
    "MDEyMCwidXJpIjoiUE9TVCBhcGkuY29pbmJhc2UuY29tL2FwaS92My9icm9rZXJhZ2Uvb3JkZXJzIn0.nDFuhJXLSoGuISOW"
    "7rRsAIzbEWCB-F8MhCAopMHlpXMMxEEK90Y3gVd0ArkasyHf5cfct8WWfCwlrqD_O92xBg"
)


def ec_pem() -> tuple[str, ec.EllipticCurvePublicKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()


def ed_pem(seed: bytes = ED_SEED) -> str:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify(token: str, public_key: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify `token` the way a venue would (independently of the signer) and return its parts."""
    head, body, signature = token.split(".")
    message, raw = f"{head}.{body}".encode(), unb64(signature)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        assert len(raw) == 64  # JWS r || s, not DER
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    else:
        public_key.verify(raw, message)
    return orjson.loads(unb64(head)), orjson.loads(unb64(body))


def test_an_es256_token_carries_the_documented_header_and_claims_and_verifies() -> None:
    pem, public_key = ec_pem()
    credentials = CoinbaseCredentials(KEY_NAME, pem)
    uri = jwt_uri("post", "api.coinbase.com", "/api/v3/brokerage/orders")
    header, claims = verify(build_jwt(credentials, uri, NOW), public_key)
    assert set(header) == {"alg", "kid", "nonce", "typ"}
    assert (header["alg"], header["kid"], header["typ"]) == ("ES256", KEY_NAME, "JWT")
    assert len(header["nonce"]) == 32 and int(header["nonce"], 16) >= 0
    assert claims == {
        "sub": KEY_NAME,
        "iss": "cdp",
        "nbf": NOW,
        "exp": NOW + 120,
        "uri": "POST api.coinbase.com/api/v3/brokerage/orders",
    }


def test_each_token_has_its_own_nonce() -> None:
    credentials = CoinbaseCredentials(KEY_NAME, ec_pem()[0])
    tokens = [build_jwt(credentials, "GET h/p", NOW) for _ in range(3)]
    nonces = {orjson.loads(unb64(t.split(".")[0]))["nonce"] for t in tokens}
    assert len(nonces) == 3


def test_a_token_signed_with_another_key_does_not_verify() -> None:
    credentials = CoinbaseCredentials(KEY_NAME, ec_pem()[0])
    _, other_public = ec_pem()
    with pytest.raises(InvalidSignature):
        verify(build_jwt(credentials, "GET h/p", NOW), other_public)


def test_the_uri_claim_never_carries_the_query_string() -> None:
    assert jwt_uri("GET", "api.coinbase.com", "/api/v3/brokerage/accounts?limit=250&cursor=x") == (
        "GET api.coinbase.com/api/v3/brokerage/accounts"
    )


def test_the_ed25519_encoding_is_pinned_byte_for_byte() -> None:
    credentials = CoinbaseCredentials(KEY_NAME, ed_pem())
    uri = "POST api.coinbase.com/api/v3/brokerage/orders"
    token = build_jwt(credentials, uri, NOW, nonce="00112233445566778899aabbccddeeff")
    public_key = ed25519.Ed25519PrivateKey.from_private_bytes(ED_SEED).public_key()
    header, claims = verify(token, public_key)
    assert header["alg"] == "EdDSA" and claims["uri"] == uri
    assert token == ED_VECTOR


def test_a_raw_base64_ed25519_key_signs_like_its_pem() -> None:
    public = ed25519.Ed25519PrivateKey.from_private_bytes(ED_SEED).public_key()
    raw64 = base64.b64encode(ED_SEED + public.public_bytes_raw()).decode()
    raw32 = base64.b64encode(ED_SEED).decode()
    tokens = {
        build_jwt(CoinbaseCredentials(KEY_NAME, key), "GET h/p", NOW, nonce="ab")
        for key in (raw64, raw32, ed_pem())
    }
    assert len(tokens) == 1


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "-----BEGIN EC PRIVATE KEY-----\nbm90IGEga2V5\n-----END EC PRIVATE KEY-----\n",
        "not base64 at all!",
        base64.b64encode(b"sixteen bytes!!!").decode(),
    ],
)
def test_an_unusable_key_is_refused_without_quoting_it(bad: str) -> None:
    with pytest.raises(CredentialsError) as caught:
        CoinbaseCredentials(KEY_NAME, bad)
    text = str(caught.value)
    assert "coinbase credentials" in text
    assert not bad or bad.strip() not in text
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_a_p384_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(CredentialsError, match="P-256"):
        CoinbaseCredentials(KEY_NAME, pem)


def test_credentials_never_show_the_key_or_its_name() -> None:
    pem, _ = ec_pem()
    credentials = CoinbaseCredentials(KEY_NAME, pem)
    for text in (repr(credentials), str(credentials), f"{credentials!r}", repr([credentials])):
        assert KEY_NAME not in text and "BEGIN" not in text
        assert not any(line in text for line in credentials.values())
    assert repr(credentials) == "CoinbaseCredentials(<redacted>, algorithm=ES256)"
