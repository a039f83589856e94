"""The lifecycle every signed trading client shares (`connectors.lifecycle.StartOnce`)."""

from __future__ import annotations

import asyncio

import pytest

from connectors.bybit.trading import BybitTrading
from connectors.coinbase.trading import CoinbaseTrading
from connectors.kraken.trading import KrakenTrading
from connectors.lifecycle import StartOnce
from connectors.okx.trading import OkxTrading


class Client(StartOnce):
    """A client whose opening takes a while and can be told to fail once."""

    def __init__(self, *, fail_first: bool = False) -> None:
        super().__init__()
        self.opened = 0
        self.shut = 0
        self.logged = 0
        self.fail_next = fail_first

    async def _open(self) -> None:
        self.opened += 1
        await asyncio.sleep(0.01)
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("venue unreachable")

    async def _shut(self) -> None:
        self.shut += 1

    def _log_started(self) -> None:
        self.logged += 1


async def test_concurrent_first_calls_open_the_client_once() -> None:
    client = Client()
    await asyncio.gather(*(client._ensure_started() for _ in range(5)), client.start())
    assert (client.opened, client.logged, client.shut) == (1, 1, 0)


async def test_a_failed_start_closes_what_it_opened_and_the_next_call_starts_afresh() -> None:
    client = Client(fail_first=True)
    with pytest.raises(ConnectionError):
        await client.start()
    assert (client.opened, client.shut, client.logged) == (1, 1, 0)
    await client._ensure_started()
    assert (client.opened, client.shut, client.logged) == (2, 1, 1)


async def test_close_is_idempotent_and_a_closed_client_starts_again_on_use() -> None:
    async with Client() as client:
        assert client.opened == 1
    await client.close()
    assert client.shut == 2
    await client._ensure_started()
    assert client.opened == 2


@pytest.mark.parametrize("client_class", [BybitTrading, OkxTrading, CoinbaseTrading, KrakenTrading])
def test_every_signed_client_shares_the_lifecycle(client_class: type) -> None:
    assert issubclass(client_class, StartOnce)
    own = {name for name in ("start", "close", "__aenter__", "__aexit__") if name in vars(client_class)}
    assert not own, f"{client_class.__name__} redefines {sorted(own)}"
