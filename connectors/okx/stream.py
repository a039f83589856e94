"""OKX v5 market-data adapter: `bbo-tbt` (top of book) or `books` (depth) on the public WebSocket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import ClassVar, Final

import aiohttp
import orjson

from connectors.base import Parser, VenueAdapter
from connectors.errors import VenueConnectionError, VenueError
from connectors.okx.books import BOOK_LEVELS, BooksParser
from connectors.okx.facts import FACTS
from connectors.okx.parse import BboParser

_REQUEST_TIMEOUT_S: Final = 10.0
# `GET /api/v5/market/books` allows 40 requests per 2 s per IP.
_REST_INTERVAL_S: Final = 2.0 / 40
_BODY_SAMPLE_CHARS: Final = 200


class OkxAdapter(VenueAdapter):
    """Subscribe every configured spot instrument to `bbo-tbt`, or to `books` when `depth` is set.

    Canonical symbols are OKX spot instIds as they are (`BTC-USDT`). The `books`
    feed resyncs a symbol from the REST snapshot `GET /api/v5/market/books?instId=&sz=400`
    (`fetch_snapshot`), which is also how its books start once OKX stops sending
    the stream's own snapshot.
    """

    venue: ClassVar[str] = "okx"
    default_ws_url: ClassVar[str] = FACTS.ws_url
    default_rest_url: ClassVar[str | None] = FACTS.rest_url
    max_depth: ClassVar[int | None] = BOOK_LEVELS
    # OKX drops a connection after 30 s without data; a text `ping` before that keeps it.
    keepalive_interval_s: ClassVar[float | None] = 20.0
    max_args_bytes: ClassVar[int] = 64 * 1024

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        ws_url: str | None = None,
        rest_url: str | None = None,
        depth: int | None = None,
    ) -> None:
        """Configure the canonical symbols to stream; raise ValueError on bad input."""
        super().__init__(symbols, ws_url=ws_url, rest_url=rest_url, depth=depth)
        self._inst_ids = {symbol: symbol for symbol in self.symbols}
        channel = "bbo-tbt" if self.depth is None else "books"
        self._subscribe = orjson.dumps(
            {"op": "subscribe", "args": [{"channel": channel, "instId": inst} for inst in self._inst_ids]}
        ).decode()
        if len(self._subscribe) > self.max_args_bytes:
            raise ValueError(
                f"okx: subscribing {len(self.symbols)} symbols takes over {self.max_args_bytes} bytes"
            )
        self._rest: _RestBooks | None = None
        if self.depth is not None and self.rest_url is not None:
            self._rest = _RestBooks(self.rest_url)

    def connect_url(self) -> str:
        """Return the public endpoint itself."""
        return self.ws_url

    def subscribe_messages(self) -> list[str]:
        """Return one subscribe request with an argument per instrument."""
        return [self._subscribe]

    def keepalive_message(self) -> str | None:
        """Return OKX's plain-text ping (not JSON); the server answers `pong`."""
        return "ping"

    def new_parser(self) -> Parser:
        """Return a bbo-tbt parser, or a books parser whose books all start empty."""
        if self.depth is None:
            return BboParser(self._inst_ids)
        return BooksParser(self._inst_ids, self.depth)

    def resync_messages(self, symbol: str) -> list[str] | None:
        """Return no frames: a bbo-tbt push is whole, and books resync from a REST snapshot."""
        return []

    async def fetch_snapshot(self, symbol: str) -> bytes:
        """Return the `GET /api/v5/market/books` body of `symbol`; raise VenueError on failure."""
        if self._rest is None:
            raise NotImplementedError("okx: REST snapshots serve depth books; this adapter has no depth")
        inst_id = self._inst_ids.get(symbol)
        if inst_id is None:
            raise ValueError(f"okx: {symbol!r} is not a configured symbol")
        return await self._rest.fetch(inst_id)

    async def close(self) -> None:
        """Close the REST session, if one is open."""
        if self._rest is not None:
            await self._rest.close()


class _RestBooks:
    """Fetch `/api/v5/market/books` over one aiohttp session, spaced to OKX's 40 requests per 2 s."""

    def __init__(self, rest_url: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._url = f"{rest_url}/api/v5/market/books"
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._next_at = 0.0

    async def fetch(self, inst_id: str) -> bytes:
        """Return the body of one book request; raise VenueError on failure."""
        # Reserve the slot before sleeping, so concurrent fetches queue up one interval apart.
        now = self._clock()
        start_at = max(now, self._next_at)
        self._next_at = start_at + _REST_INTERVAL_S
        if start_at > now:
            await asyncio.sleep(start_at - now)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT_S))
        params = {"instId": inst_id, "sz": str(BOOK_LEVELS)}
        try:
            async with self._session.get(self._url, params=params) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise VenueConnectionError(f"okx: GET {self._url} {inst_id} failed: {exc!r}") from exc
        if status != 200:
            sample = body[:_BODY_SAMPLE_CHARS].decode("utf-8", "replace")
            raise VenueError(f"okx: GET {self._url} {inst_id} answered HTTP {status}: {sample!r}")
        return body

    async def close(self) -> None:
        """Close the HTTP session; idempotent, and the next fetch opens a new one."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
