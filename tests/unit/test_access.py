"""Who may trade what, in the router (`router.access`): signed orders and per-user entitlements."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_smart_router import World, order, three_books

from router.access import AccessPolicy, Entitlements
from router.signatures import KeyRing, sign

U1, U2 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
KEYS = KeyRing({"u1": (U1.public_key(),), "u2": (U2.public_key(),)})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "state")
    w.access = AccessPolicy(
        signatures_required=True,
        users=KEYS,
        entitlements={"u2": Entitlements(venues=frozenset({"bybit"}), kinds=frozenset({"order"}))},
    )
    w.router = w.make_router()
    three_books(w)
    yield w
    w.ledger.close()


def result(raw: bytes | None) -> dict[str, object]:
    assert raw is not None
    decoded: dict[str, object] = orjson.loads(raw)
    return decoded


async def test_an_order_signed_by_its_user_executes(world: World) -> None:
    raw = order("r-1", quantity="0.5")
    handled = await world.router.handle(raw, headers=sign("orders", raw, "u1", U1))
    assert result(handled.result)["status"] == "filled"
    assert handled.invalid is None and len(world.executor.sent) == 1


@pytest.mark.parametrize("how", ["unsigned", "forged as u1 by u2", "signed for control", "body changed"])
async def test_an_order_that_does_not_prove_its_user_is_rejected_and_claims_nothing(
    world: World, how: str
) -> None:
    raw = order("r-1", quantity="0.5")
    headers = {
        "unsigned": [],
        "forged as u1 by u2": sign("orders", raw, "u2", U2),
        "signed for control": sign("control", raw, "u1", U1),
        "body changed": sign("orders", order("r-1", quantity="0.05"), "u1", U1),
    }[how]
    handled = await world.router.handle(raw, headers=headers)
    answer = result(handled.result)
    assert (answer["status"], answer["reject_code"]) == ("rejected", "unauthenticated")
    assert handled.invalid is not None and handled.invalid.reject_code == "unauthenticated"  # → the DLQ
    assert world.executor.sent == []
    # The forgery claimed nothing: the genuine request with the same id still executes.
    genuine = await world.router.handle(raw, headers=sign("orders", raw, "u1", U1))
    assert result(genuine.result)["status"] == "filled" and not genuine.replayed


async def test_an_unreadable_unsigned_message_is_refused_before_validation(world: World) -> None:
    handled = await world.router.handle(b"{not json", headers=[])
    assert handled.result is None and handled.invalid is not None
    assert handled.invalid.reject_code == "unauthenticated"


async def test_requests_outside_the_users_entitlements_are_forbidden_and_name_what(world: World) -> None:
    named = order("r-venue", user_id="u2", quantity="0.5", venues=["binance"])
    handled = await world.router.handle(named, headers=sign("orders", named, "u2", U2))
    answer = result(handled.result)
    assert (answer["status"], answer["reject_code"]) == ("rejected", "forbidden")
    assert "u2 may not trade on binance (allowed: bybit)" in str(answer["message"])

    arbitrage = orjson.dumps(
        {"v": 1, "request_id": "r-arb", "user_id": "u2", "kind": "arbitrage", "symbol": "BTC-USDT",
         "quantity": "0.1", "buy_venue": "bybit", "sell_venue": "okx"}
    )  # fmt: skip
    handled = await world.router.handle(arbitrage, headers=sign("orders", arbitrage, "u2", U2))
    assert "u2 may not send arbitrage requests (allowed: order)" in str(result(handled.result)["message"])
    assert world.executor.sent == []


async def test_a_user_restricted_to_a_venue_is_routed_only_there(world: World) -> None:
    raw = order("r-1", user_id="u2", quantity="0.5")  # binance's 100 would win for anyone else
    handled = await world.router.handle(raw, headers=sign("orders", raw, "u2", U2))
    answer = result(handled.result)
    assert answer["status"] == "filled"
    assert {leg.venue for leg in world.executor.sent} == {"bybit"}
