"""Ed25519 signatures on orders, preferences and control (`router.signatures`): the verification table."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from router.signatures import (
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    KeyRing,
    Unauthenticated,
    load_private_key,
    parse_public_key,
    private_key_pem,
    public_key_text,
    sign,
    signed_bytes,
    verify,
    verify_as,
)

ALICE_OLD, ALICE, BOB = (Ed25519PrivateKey.generate() for _ in range(3))
RING = KeyRing({"alice": (ALICE_OLD.public_key(), ALICE.public_key()), "bob": (BOB.public_key(),)})
ORDER = orjson.dumps(
    {
        "v": 1,
        "request_id": "r-1",
        "user_id": "alice",
        "kind": "order",
        "symbol": "BTC-USDT",
        "side": "buy",
        "quantity": "0.5",
    }
)


def headers_with(headers: list[tuple[str, bytes]], name: str, value: bytes | None) -> list[tuple[str, bytes]]:
    kept = [(k, v) for k, v in headers if k != name]
    return kept if value is None else [*kept, (name, value)]


def test_a_message_signed_by_its_user_verifies() -> None:
    assert verify("orders", ORDER, sign("orders", ORDER, "alice", ALICE), RING) == "alice"
    verify_as("orders", ORDER, sign("orders", ORDER, "alice", ALICE), RING, "alice")


def test_the_signature_covers_role_newline_value_as_documented() -> None:
    headers = dict(sign("control", b"{}", "bob", BOB))
    signature = base64.b64decode(headers[SIGNATURE_HEADER], validate=True)
    BOB.public_key().verify(signature, b"control\n{}")  # raises if the covered bytes differ
    assert signed_bytes("control", b"{}") == b"control\n{}"
    assert headers[SIGNER_HEADER] == b"bob"


def test_a_rotated_key_and_the_key_it_replaces_both_verify_while_both_are_configured() -> None:
    for key in (ALICE_OLD, ALICE):
        assert verify("orders", ORDER, sign("orders", ORDER, "alice", key), RING) == "alice"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong key", "does not verify with any of 'alice'"),
        ("other signer's key", "does not verify with any of 'alice'"),
        ("value changed by one byte", "does not verify"),
        ("signed for another topic", "does not verify"),
        ("missing signature", f"no {SIGNATURE_HEADER} header"),
        ("missing signer", f"no {SIGNER_HEADER} header"),
        ("malformed base64", "not padded standard base64"),
        ("truncated signature", "not a 64-byte Ed25519 signature"),
        ("unknown signer", "unknown signer 'mallory'"),
        ("two signatures", f"2 {SIGNATURE_HEADER} headers"),
        ("signer not UTF-8", "not UTF-8"),
    ],
)
def test_what_does_not_verify_is_refused_with_its_reason(case: str, expected: str) -> None:
    value, role = ORDER, "orders"
    headers = sign("orders", ORDER, "alice", ALICE)
    if case == "wrong key":
        headers = sign("orders", ORDER, "alice", Ed25519PrivateKey.generate())
    elif case == "other signer's key":
        headers = sign("orders", ORDER, "alice", BOB)
    elif case == "value changed by one byte":
        value = ORDER.replace(b"0.5", b"0.6")
    elif case == "signed for another topic":
        role = "control"
    elif case == "missing signature":
        headers = headers_with(headers, SIGNATURE_HEADER, None)
    elif case == "missing signer":
        headers = headers_with(headers, SIGNER_HEADER, None)
    elif case == "malformed base64":
        headers = headers_with(headers, SIGNATURE_HEADER, b"not*base64")
    elif case == "truncated signature":
        headers = headers_with(headers, SIGNATURE_HEADER, base64.b64encode(b"x" * 63))
    elif case == "unknown signer":
        headers = sign("orders", ORDER, "mallory", Ed25519PrivateKey.generate())
    elif case == "two signatures":
        headers = [*headers, (SIGNATURE_HEADER, dict(headers)[SIGNATURE_HEADER])]
    elif case == "signer not UTF-8":
        headers = headers_with(headers, SIGNER_HEADER, b"\xff\xfe")
    with pytest.raises(Unauthenticated, match=expected) as refused:
        verify(role, value, headers, RING)  # type: ignore[arg-type]
    assert refused.value.reject_code == "unauthenticated"


def test_a_message_signed_by_someone_else_than_its_user_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="signed by 'bob', but the message is 'alice'"):
        verify_as("orders", ORDER, sign("orders", ORDER, "bob", BOB), RING, "alice")


def test_public_keys_round_trip_through_their_config_form_and_bad_ones_are_named() -> None:
    text = public_key_text(ALICE.public_key())
    assert len(base64.b64decode(text)) == 32
    assert public_key_text(parse_public_key(text)) == text
    with pytest.raises(ValueError, match="decodes to 32 bytes, this one to 31"):
        parse_public_key(base64.b64encode(b"k" * 31).decode())
    with pytest.raises(ValueError, match="standard padded base64"):
        parse_public_key("%%%")


def test_a_private_key_file_loads_and_errors_name_the_file_not_its_content(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    path.write_bytes(private_key_pem(ALICE))
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    loaded = load_private_key(path)
    assert public_key_text(loaded.public_key()) == public_key_text(ALICE.public_key())
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match=r"junk\.key is not an unencrypted PKCS#8 PEM") as bad:
        load_private_key(junk)
    assert "c2VjcmV0" not in str(bad.value)
    with pytest.raises(ValueError, match="cannot read the signing key file"):
        load_private_key(tmp_path / "missing.key")


def test_keygen_writes_an_owner_only_key_prints_its_public_line_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon.cli import main

    path = tmp_path / "desk.key"
    assert main(["keygen", "--out", str(path)]) == 0
    out = capsys.readouterr().out.strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_private_key(path)
    assert out == f'public_keys = ["{public_key_text(key.public_key())}"]'
    before = path.read_bytes()
    assert main(["keygen", "--out", str(path)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert path.read_bytes() == before
