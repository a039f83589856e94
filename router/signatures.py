"""Who sent a message: Ed25519 signatures on the three input topics (orders, preferences, control).

The signer puts two Kafka record headers on the message:

- `smartroute-signer`: the principal id (a user id; an operator id for
  control and for preference changes made on a user's behalf);
- `smartroute-signature`: standard padded base64 of the Ed25519 signature over
  `<topic role> + "\\n" + <record value exactly as produced>`, where the role is
  `orders`, `preferences` or `control` — the topic name without its prefix —
  so a message signed for one topic is refused on another.

Message bodies do not change. Public keys come from the config as base64 of
the raw 32-byte key, several per principal so keys can be rotated; private
keys are PKCS#8 PEM files (`smartroute keygen`) read only from files.

`verify` answers who signed, or raises `Unauthenticated` with a reason that
names what is wrong and never echoes key material.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from router.errors import RouterError

__all__ = [
    "ROLES",
    "SIGNATURE_HEADER",
    "SIGNER_HEADER",
    "KeyRing",
    "Role",
    "Unauthenticated",
    "generate_key_file",
    "load_private_key",
    "parse_public_key",
    "private_key_pem",
    "public_key_text",
    "sign",
    "signed_bytes",
    "verify",
    "verify_as",
]

Role = Literal["orders", "preferences", "control"]
ROLES: Final[tuple[Role, ...]] = ("orders", "preferences", "control")
SIGNER_HEADER: Final = "smartroute-signer"
SIGNATURE_HEADER: Final = "smartroute-signature"
_SIGNATURE_BYTES: Final = 64
_PUBLIC_KEY_BYTES: Final = 32
_MAX_SIGNER_CHARS: Final = 64

Headers = Sequence[tuple[str, bytes | None]]


class Unauthenticated(RouterError):
    """A message whose sender cannot be established: missing, malformed or wrong signature, unknown signer."""

    reject_code: ClassVar[str] = "unauthenticated"

    def __init__(self, message: str, *, signer: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.signer = signer


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The public keys of each principal that may sign; a principal may hold several (rotation)."""

    keys: Mapping[str, tuple[Ed25519PublicKey, ...]]

    def of(self, principal: str) -> tuple[Ed25519PublicKey, ...]:
        """Return the keys of `principal` (none when it is unknown)."""
        return self.keys.get(principal, ())


def signed_bytes(role: Role, value: bytes) -> bytes:
    """Return the bytes a signature covers: the topic role, a newline, the record value."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role.encode() + b"\n" + value


def sign(role: Role, value: bytes, signer: str, key: Ed25519PrivateKey) -> list[tuple[str, bytes]]:
    """Return the two record headers that sign `value` for `role` as `signer`."""
    _check_signer(signer)
    signature = key.sign(signed_bytes(role, value))
    return [(SIGNER_HEADER, signer.encode()), (SIGNATURE_HEADER, base64.b64encode(signature))]


def verify(role: Role, value: bytes, headers: Headers, ring: KeyRing) -> str:
    """Return the principal whose key signed `value` for `role`; raise Unauthenticated otherwise."""
    signer = _header_text(headers, SIGNER_HEADER)
    raw_signature = _header(headers, SIGNATURE_HEADER)
    if raw_signature is None:
        raise Unauthenticated(f"no {SIGNATURE_HEADER} header", signer=signer)
    signature = _decode_signature(raw_signature, signer)
    keys = ring.of(signer)
    if not keys:
        raise Unauthenticated(f"unknown signer {signer!r}: no public key is configured for it", signer=signer)
    message = signed_bytes(role, value)
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return signer
    raise Unauthenticated(
        f"the signature does not verify with any of {signer!r}'s {len(keys)} key(s) for the {role} topic",
        signer=signer,
    )


def verify_as(role: Role, value: bytes, headers: Headers, ring: KeyRing, principal: str) -> None:
    """Raise Unauthenticated unless `principal` itself signed `value` for `role` (an order: its user)."""
    signer = verify(role, value, headers, ring)
    if signer != principal:
        raise Unauthenticated(f"signed by {signer!r}, but the message is {principal!r}'s", signer=signer)


def _header(headers: Headers, name: str) -> bytes | None:
    found = [value for key, value in headers if key == name]
    if len(found) > 1:
        raise Unauthenticated(f"{len(found)} {name} headers; a signed message carries exactly one")
    return found[0] if found else None


def _header_text(headers: Headers, name: str) -> str:
    raw = _header(headers, name)
    if raw is None:
        raise Unauthenticated(f"no {name} header")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise Unauthenticated(f"the {name} header is not UTF-8") from None
    try:
        return _check_signer(text)
    except ValueError as exc:
        raise Unauthenticated(f"the {name} header is malformed: {exc}") from None


def _check_signer(signer: str) -> str:
    if not 1 <= len(signer) <= _MAX_SIGNER_CHARS or not signer.isprintable():
        raise ValueError(f"a signer id is 1..{_MAX_SIGNER_CHARS} printable characters, got {signer[:80]!r}")
    return signer


def _decode_signature(raw: bytes, signer: str) -> bytes:
    try:
        signature = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise Unauthenticated(
            f"the {SIGNATURE_HEADER} header is not padded standard base64", signer=signer
        ) from None
    if len(signature) != _SIGNATURE_BYTES:
        raise Unauthenticated(
            f"the {SIGNATURE_HEADER} header holds {len(signature)} bytes, not a {_SIGNATURE_BYTES}-byte "
            "Ed25519 signature",
            signer=signer,
        )
    return signature


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Return the key in `text` (base64 of the raw 32-byte Ed25519 key); ValueError if it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a public key is standard padded base64 of the raw 32-byte Ed25519 key") from None
    if len(raw) != _PUBLIC_KEY_BYTES:
        raise ValueError(f"a public key decodes to {_PUBLIC_KEY_BYTES} bytes, this one to {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_text(key: Ed25519PublicKey) -> str:
    """Return the config form of `key`: base64 of its raw 32 bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """Return `key` as an unencrypted PKCS#8 PEM (the file `smartroute keygen` writes, mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_key_file(path: Path) -> str:
    """Create `path` (mode 0600, never overwriting) holding a new private key; return its public key text."""
    key = Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_key_pem(key))
    return public_key_text(key.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from a PKCS#8 PEM file; ValueError names the file, never its content."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the signing key file {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{path} is not an unencrypted PKCS#8 PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key
