"""Kraken REST signing: the docs' official test vector, nonces, and credentials that never print."""

from __future__ import annotations

import pytest

from connectors.kraken.signing import KrakenCredentials, NonceSource, sign

# https://docs.kraken.com/api/docs/guides/spot-rest-auth, "Example" (also in the shared page, §4.3).
DOC_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
DOC_NONCE = "1616492376594"
DOC_PAYLOAD = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
DOC_PATH = "/0/private/AddOrder"
DOC_SIGNATURE = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="


def test_the_docs_test_vector_reproduces_byte_for_byte() -> None:
    assert sign(DOC_SECRET, DOC_PATH, DOC_NONCE, DOC_PAYLOAD) == DOC_SIGNATURE


@pytest.mark.parametrize(
    ("path", "nonce", "payload"),
    [
        ("/0/private/CancelOrder", DOC_NONCE, DOC_PAYLOAD),  # the path is signed
        (DOC_PATH, "1616492376595", DOC_PAYLOAD),  # the nonce is signed apart from the body
        (DOC_PATH, DOC_NONCE, DOC_PAYLOAD.replace("volume=1.25", "volume=12.5")),  # the body is signed
    ],
)
def test_any_change_to_path_nonce_or_body_changes_the_signature(path: str, nonce: str, payload: str) -> None:
    assert sign(DOC_SECRET, path, nonce, payload) != DOC_SIGNATURE


def test_nonces_strictly_increase_even_when_the_clock_stalls_or_steps_back() -> None:
    readings = iter([1_000_000, 1_000_000, 999_000, 2_000_000, 2_000_000])
    source = NonceSource(lambda: next(readings))
    assert [source.next() for _ in range(5)] == [1_000_000, 1_000_001, 1_000_002, 2_000_000, 2_000_001]


def test_a_new_source_after_a_restart_starts_above_the_previous_ones_nonces() -> None:
    wall = [1_700_000_000_000_000]
    before = NonceSource(lambda: wall[0])
    issued = [before.next() for _ in range(50)]  # a burst inside one microsecond runs ahead by 49 µs
    wall[0] += 1_000_000  # a restart takes far longer than a microsecond a request
    assert NonceSource(lambda: wall[0]).next() > max(issued)


def test_the_default_nonce_is_microseconds_since_the_epoch() -> None:
    nonce = NonceSource().next()
    assert 1_600_000_000_000_000 < nonce < 2**64


def test_credentials_never_print_and_refuse_a_secret_that_is_not_base64() -> None:
    credentials = KrakenCredentials("key-canary", DOC_SECRET)
    assert "key-canary" not in repr(credentials) and DOC_SECRET not in repr(credentials)
    assert "key-canary" not in str(credentials)
    assert credentials.values() == ("key-canary", DOC_SECRET)
    with pytest.raises(ValueError, match="not valid base64") as raised:
        KrakenCredentials("key", "not base64 at all!")
    assert "not base64 at all" not in str(raised.value)
    with pytest.raises(ValueError, match="key is empty"):
        KrakenCredentials("", DOC_SECRET)
