"""The ingest bench's loopback server: pre-encoded Binance bookTicker frames, as fast as the client reads.

One asyncio server speaks just enough of Binance Spot for every client under
test: `GET /api/v3/exchangeInfo` (cryptofeed and ccxt.pro load their symbol
maps from it) and WebSocket upgrades on

- `/stream?streams=a/b/...` (cryptofeed): combined frames, streaming at once;
- `/stream` then a SUBSCRIBE (smartroute, the bare loop): combined frames
  `{"stream": ..., "data": ...}`, streaming after the first SUBSCRIBE is acked;
- `/ws...` then a SUBSCRIBE (ccxt.pro, the raw bare loop): raw bookTicker frames.

Every connection receives the same `frames` frames (200 symbols in turn,
seeded random walks), already framed as WebSocket text frames and written in
large blocks, so the server costs almost nothing per frame: `drain()` gives
TCP backpressure, which makes the client's read speed the only limit.
Pings are answered, a close is echoed. Run alone: `python -m bench.server`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import random
import struct
import sys
from collections.abc import Sequence
from typing import Final
from urllib.parse import parse_qs, urlsplit

import orjson

_WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_BLOCK_FRAMES: Final = 10_000
_MAX_HEADER_BYTES: Final = 16_384
_OP_TEXT, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x8, 0x9, 0xA


def bench_symbols(count: int) -> list[str]:
    """Return `count` canonical symbols `QAA-USDT`, `QAB-USDT`, ... (no base is a known quote asset)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if not 1 <= count <= len(letters) ** 2:
        raise ValueError(f"symbol count must be within 1..{len(letters) ** 2}, got {count}")
    return [f"Q{letters[n // 26]}{letters[n % 26]}-USDT" for n in range(count)]


def ws_frame(payload: bytes, opcode: int = _OP_TEXT) -> bytes:
    """Return one unmasked, unfragmented server-to-client WebSocket frame."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


def book_ticker_payloads(symbols: Sequence[str], count: int, seed: int) -> list[dict[str, object]]:
    """Return `count` bookTicker payloads cycling over `symbols`, prices on seeded random walks."""
    rng = random.Random(seed)
    mids = {symbol: rng.uniform(0.5, 500.0) for symbol in symbols}
    payloads: list[dict[str, object]] = []
    for n in range(count):
        symbol = symbols[n % len(symbols)]
        mid = mids[symbol] = mids[symbol] * (1.0 + rng.gauss(0.0, 0.0002))
        half_spread = mid * 0.0001
        payloads.append(
            {
                "u": 400_900_000 + n,
                "s": symbol.replace("-", ""),
                "b": f"{mid - half_spread:.8f}",
                "B": f"{rng.uniform(0.1, 900.0):.8f}",
                "a": f"{mid + half_spread:.8f}",
                "A": f"{rng.uniform(0.1, 900.0):.8f}",
            }
        )
    return payloads


def exchange_info(symbols: Sequence[str]) -> bytes:
    """Return a Binance `GET /api/v3/exchangeInfo` document listing `symbols` as trading spot pairs."""
    entries = []
    for symbol in symbols:
        base, quote = symbol.split("-")
        entries.append(
            {
                "symbol": base + quote,
                "status": "TRADING",
                "baseAsset": base,
                "baseAssetPrecision": 8,
                "quoteAsset": quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"],
                "icebergAllowed": True,
                "ocoAllowed": True,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.00000001", "maxPrice": "1000000.00000000",
                     "tickSize": "0.00000001"},
                    {"filterType": "LOT_SIZE", "minQty": "0.00000001", "maxQty": "90000000.00000000",
                     "stepSize": "0.00000001"},
                ],
                "permissions": ["SPOT"],
                "permissionSets": [["SPOT"]],
            }
        )  # fmt: skip
    document = {
        "timezone": "UTC",
        "serverTime": 0,
        "rateLimits": [],
        "exchangeFilters": [],
        "symbols": entries,
    }
    return orjson.dumps(document)


class FrameServer:
    """Serve the same pre-encoded frame sequence to every WebSocket client, as fast as it reads."""

    def __init__(
        self, symbols: Sequence[str], frames: int, *, seed: int = 7, host: str = "127.0.0.1"
    ) -> None:
        """Pre-encode `frames` frames over `symbols` in both the raw and the combined form."""
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.symbols = list(symbols)
        self.frames = frames
        self._host = host
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._exchange_info = exchange_info(self.symbols)
        payloads = book_ticker_payloads(self.symbols, min(frames, _BLOCK_FRAMES), seed)
        raw = [ws_frame(orjson.dumps(p)) for p in payloads]
        combined = [
            ws_frame(orjson.dumps({"stream": f"{str(p['s']).lower()}@bookTicker", "data": p}))
            for p in payloads
        ]
        self._blocks = {False: _blocks(raw, frames), True: _blocks(combined, frames)}

    @property
    def port(self) -> int:
        """Return the bound port (after `start`)."""
        if self._server is None:
            raise RuntimeError("the frame server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, port: int = 0) -> None:
        """Listen on `host:port` (0: a free port)."""
        self._server = await asyncio.start_server(self._serve, self._host, port)

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_HEADER_BYTES:
                return
            path, headers = _parse_request(head)
            if headers.get("upgrade", "").lower() != "websocket":
                await self._answer_http(path, writer)
                return
            await self._websocket(path, headers, reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return  # a client that went away or spoke nonsense; the next one is served as usual
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer_http(self, path: str, writer: asyncio.StreamWriter) -> None:
        if urlsplit(path).path == "/api/v3/exchangeInfo":
            status, body = b"200 OK", self._exchange_info
        else:
            status, body = b"404 Not Found", b'{"code":-1,"msg":"not served by the bench server"}'
        writer.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
        )  # fmt: skip
        await writer.drain()

    async def _websocket(
        self, path: str, headers: dict[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + _WS_GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        parts = urlsplit(path)
        combined = parts.path.rstrip("/") == "/stream"
        subscribed = asyncio.Event()
        if combined and parse_qs(parts.query).get("streams"):
            subscribed.set()
        sender = asyncio.create_task(self._stream(writer, combined, subscribed), name="bench-frames")
        try:
            await _read_client(reader, writer, subscribed)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _stream(self, writer: asyncio.StreamWriter, combined: bool, subscribed: asyncio.Event) -> None:
        await subscribed.wait()
        for block in self._blocks[combined]:
            writer.write(block)
            await writer.drain()


def _blocks(frames: list[bytes], total: int) -> list[bytes]:
    """Return `total` frames cycling over `frames`, joined into blocks of at most len(frames) frames."""
    whole = b"".join(frames)
    full, rest = divmod(total, len(frames))
    return [whole] * full + ([b"".join(frames[:rest])] if rest else [])


def _parse_request(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    if method != "GET":
        raise ValueError(f"unsupported method {method!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return path, headers


async def _read_client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, subscribed: asyncio.Event
) -> None:
    """Read the client's frames until it closes: ack SUBSCRIBEs, answer pings, echo the close."""
    while True:
        opcode, payload = await _client_frame(reader)
        if opcode == _OP_CLOSE:
            writer.write(ws_frame(payload[:2], _OP_CLOSE))
            await writer.drain()
            return
        if opcode == _OP_PING:
            writer.write(ws_frame(payload, _OP_PONG))
        elif opcode == _OP_TEXT:
            request = orjson.loads(payload)
            if isinstance(request, dict) and request.get("method") == "SUBSCRIBE":
                writer.write(ws_frame(orjson.dumps({"result": None, "id": request.get("id")})))
                subscribed.set()


async def _client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one masked client frame (clients here never fragment control or request frames)."""
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
    data = await reader.readexactly(size)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return first & 0x0F, payload


async def _serve_until_stdin_closes(symbols: int, frames: int, seed: int) -> None:
    server = FrameServer(bench_symbols(symbols), frames, seed=seed)
    await server.start()
    sys.stdout.write(orjson.dumps({"port": server.port}).decode() + "\n")
    sys.stdout.flush()
    # The harness holds our stdin open; its end (or the harness's death) stops the server.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until stdin closes; print `{"port": N}` once listening."""
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    asyncio.run(_serve_until_stdin_closes(args.symbols, args.frames, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
