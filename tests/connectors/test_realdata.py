"""Real exchange traffic, recorded by other projects, through the production parsers and book rules.

The recordings live outside the repository, at `<repo>/../shared/realdata` (CI clones the repo
beside `shared/`) or wherever `REALDATA_DIR` points; `PROVENANCE.md` there says where each
file comes from. Without them every test here is skipped, saying so.

For each venue: every checksum and sequence of the recording verifies; the final book the parser
serves equals a reference book computed here independently (a dict per side: set the level, drop it
at quantity 0, keep the venue's depth), and Binance's bookTicker, recorded beside the diffs, agrees
with it at equal update ids; a one-byte change is caught (a digit of a level where the venue has
checksums, a dropped frame or a digit of an update id where it has sequences).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.base import Parser
from connectors.binance.depth import DepthParser
from connectors.binance.parse import BookTickerParser
from connectors.book import BookInvalid
from connectors.coinbase.parse import TickerParser as CoinbaseTickerParser
from connectors.errors import ParseError
from connectors.kraken.parse import TickerParser as KrakenTickerParser
from connectors.okx.books import BooksParser
from connectors.registry import build_adapter
from connectors.types import Level, Quote

REPO = Path(__file__).resolve().parents[2]


def realdata_dir() -> Path | None:
    """Return `<repo>/../shared/realdata`, else `$REALDATA_DIR`, when it holds the recordings.

    Not a `SMARTROUTE_*` variable: those are config overrides, and the loader refuses unknown ones.
    """
    candidates = [REPO.parent / "shared" / "realdata"]
    if os.environ.get("REALDATA_DIR"):
        candidates.append(Path(os.environ["REALDATA_DIR"]))
    return next((path for path in candidates if (path / "PROVENANCE.md").is_file()), None)


@pytest.fixture(scope="module")
def realdata() -> Path:
    found = realdata_dir()
    if found is None:
        pytest.skip(
            f"real recorded frames not found: neither {REPO.parent / 'shared' / 'realdata'} nor "
            "$REALDATA_DIR holds PROVENANCE.md (CI clones the repository beside shared/)"
        )
    return found


# ----- helpers -------------------------------------------------------------------------------------


class Number(str):
    """A JSON number's text as the recording wrote it (`5.1e-05`, `4.0`), so frames keep it."""


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Number, parse_int=Number)


def to_frame(value: Any) -> str:
    """Write a value read by `load_json` back as frame text, every number exactly as recorded."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_frame(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_frame(v) for v in value) + "]"
    if isinstance(value, Number):
        return str(value)
    return json.dumps(value)


def timestamped(path: Path) -> Iterator[tuple[float, str]]:
    """Yield (epoch seconds, frame) from cryptofeed's `epoch: frame` lines, skipping its own sends."""
    for line in path.read_text(encoding="utf-8").splitlines():
        stamp, separator, frame = line.partition(": ")
        if separator and not stamp.endswith(("<-", "<->")) and " " not in stamp:
            yield float(stamp), frame


class ReferenceBook:
    """The plain reading of a price-level book: price → quantity per side, 0 deletes, depth kept."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def snapshot(self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]]) -> None:
        self.bids, self.asks = {}, {}
        self.apply(bids, asks)

    def apply(self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty, *_ in levels:
                if Decimal(qty):
                    side[Decimal(price)] = Decimal(qty)
                else:
                    side.pop(Decimal(price), None)
        for side, best_first in ((self.bids, True), (self.asks, False)):
            for price in sorted(side, reverse=best_first)[self.depth :]:
                del side[price]

    def top(self, n: int) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        return (
            tuple(sorted(self.bids.items(), reverse=True)[:n]),
            tuple(sorted(self.asks.items())[:n]),
        )


def parse_all(parser: Parser, frames: Iterable[str]) -> list[Quote]:
    quotes: list[Quote] = []
    for number, frame in enumerate(frames):
        quotes.extend(parser.parse(frame, number))
    return quotes


def change_digit(frame: str, anchor: str) -> str:
    """Raise the first digit after `anchor` in the frame's text by one (9 becomes 8): one byte changed."""
    start = frame.index(anchor) + len(anchor)
    at = next(i for i in range(start, len(frame)) if frame[i].isdigit())
    digit = int(frame[at])
    return frame[:at] + str(digit + 1 if digit < 9 else 8) + frame[at + 1 :]


# ----- Kraken v2 `book` (checksums) ------------------------------------------------------------------


def kraken_sdk_frames(realdata: Path) -> list[str]:
    recording = load_json(realdata / "kraken" / "python-kraken-sdk_orderbook-v2.json")
    return [to_frame(recording["init"]), *(to_frame(update) for update in recording["updates"])]


def kraken_reference(frames: Iterable[str], depth: int) -> ReferenceBook:
    book = ReferenceBook(depth)
    for frame in frames:
        message = orjson.loads(frame)
        (item,) = message["data"]
        bids = [(str(level["price"]), str(level["qty"])) for level in item["bids"]]
        asks = [(str(level["price"]), str(level["qty"])) for level in item["asks"]]
        (book.snapshot if message["type"] == "snapshot" else book.apply)(bids, asks)
    return book


def test_kraken_book_verifies_every_checksum_and_ends_at_the_reference_book(realdata: Path) -> None:
    frames = kraken_sdk_frames(realdata)
    quotes = parse_all(build_adapter("kraken", ["BTC-USD"], depth=10).new_parser(), frames)
    assert len(frames) == 510 and len(quotes) == 510  # a quote after every frame: no checksum failed
    # Floats re-encoded by the recorder (`4.0`, `0.0`) change nothing: the rule writes pair decimals.
    assert any(".0," in frame or ".0}" in frame for frame in frames)
    assert (quotes[-1].bids, quotes[-1].asks) == kraken_reference(frames, 10).top(10)


def test_kraken_one_changed_digit_fails_the_checksum(realdata: Path) -> None:
    frames = kraken_sdk_frames(realdata)
    at = next(i for i, frame in enumerate(frames) if i > 100 and '"qty":' in frame)
    frames[at] = change_digit(frames[at], '"qty":')
    parser = build_adapter("kraken", ["BTC-USD"], depth=10).new_parser()
    parse_all(parser, frames[:at])
    with pytest.raises(BookInvalid) as caught:
        parser.parse(frames[at], at)
    assert caught.value.reason == "checksum"


def test_kraken_ccxt_books_and_ticker(realdata: Path) -> None:
    excerpt = load_json(realdata / "kraken" / "ccxt_static_ws_kraken_excerpt.json")
    cases = {case["description"]: case["messages"] for case in excerpt["cases"]}
    for name, depth in (
        ("spot orderbook depth 10", 10),
        ("orderbook reset in place on repeated snapshot", 10),
    ):
        frames = [to_frame(message) for message in cases[name]]
        quotes = parse_all(build_adapter("kraken", ["BTC-USD"], depth=depth).new_parser(), frames)
        book_frames = [to_frame(m) for m in cases[name] if m.get("channel") == "book"]
        assert len(quotes) == len(book_frames)  # every snapshot and update verified
        assert "e-05" in "".join(book_frames)  # a re-encoded `5.1e-05` checksums as `0.00005100`
        assert (quotes[-1].bids, quotes[-1].asks) == kraken_reference(book_frames, depth).top(depth)
    # DOGE/USDT: a 4-level snapshot without a checksum cannot be verified; it is refused (counted as a
    # parse error) and the book waits for the next snapshot, which has one.
    frames = [
        to_frame(message)
        for message in cases["orderbook depth kept when a deeper snapshot follows a thin one"]
    ]
    parser = build_adapter("kraken", ["BTC-USD", "DOGE-USDT"], depth=10).new_parser()
    served: list[Quote] = []
    refused = 0
    for number, frame in enumerate(frames):
        try:
            served.extend(parser.parse(frame, number))
        except ParseError as exc:
            assert not isinstance(exc, BookInvalid) and "checksum" in str(exc)
            refused += 1
    book_frames = [frame for frame in frames if '"checksum"' in frame]
    assert refused == 1 and len(served) == len(book_frames) == 3
    # Five-decimal prices (0.09561): the pair's precision is pinned from the snapshot's checksum.
    assert (served[-1].bids, served[-1].asks) == kraken_reference(book_frames, 10).top(10)
    ticker = [to_frame(message) for message in cases["spot ticker"]]
    quotes = parse_all(KrakenTickerParser({"BTC/USD": "BTC-USD"}), ticker)  # status, ack and heartbeat: none
    recorded = [message["data"][0] for message in cases["spot ticker"] if message.get("channel") == "ticker"]
    assert [(q.bid, q.bid_qty, q.ask, q.ask_qty) for q in quotes] == [
        (Decimal(t["bid"]), Decimal(t["bid_qty"]), Decimal(t["ask"]), Decimal(t["ask_qty"])) for t in recorded
    ]


# ----- Binance depth diffs + REST snapshots + bookTicker (update ids) --------------------------------

BINANCE = {"NKNUSDT": "NKN-USDT", "LRCBTC": "LRC-BTC", "BLZETH": "BLZ-ETH", "RUNEEUR": "RUNE-EUR"}


def binance_recording(realdata: Path) -> tuple[list[tuple[float, str]], dict[str, tuple[float, str]]]:
    frames = list(timestamped(realdata / "binance" / "cryptofeed_BINANCE.ws.1.0.txt"))
    snapshots = {}
    for line in (realdata / "binance" / "cryptofeed_BINANCE.http.0.0.txt").read_text().splitlines():
        url, separator, reply = line.partition(" -> ")
        if separator:
            stamp, _, body = reply.partition(": ")
            snapshots[BINANCE[url.split("symbol=")[1].split("&")[0]]] = (float(stamp), body)
    return frames, snapshots


def play_binance(
    frames: list[tuple[float, str]], snapshots: dict[str, tuple[float, str]], refused: list[str]
) -> tuple[dict[str, Quote], dict[tuple[str, int], Quote], dict[tuple[str, int], Quote]]:
    """Run the depth parser as the runner does: each snapshot is loaded when its reply was recorded, a
    frame refused (ParseError) is skipped and noted in `refused`, a BookInvalid is raised."""
    parser, tickers = DepthParser(BINANCE, 1000), BookTickerParser(BINANCE)
    last: dict[str, Quote] = {}
    by_id: dict[tuple[str, int], Quote] = {}
    ticks: dict[tuple[str, int], Quote] = {}
    waiting: set[str] = set()
    for stamp, frame in frames:
        for symbol in sorted(s for s in waiting if snapshots[s][0] <= stamp):
            waiting.discard(symbol)
            for quote in parser.load_snapshot(symbol, snapshots[symbol][1].encode(), 0):
                last[symbol] = by_id[(symbol, quote.seq or 0)] = quote
        stream = orjson.loads(frame)["stream"]
        if "@depth" in stream:
            try:
                quotes = parser.parse(frame, 0)
            except BookInvalid:
                raise
            except ParseError as exc:
                refused.append(str(exc))
                continue
            for quote in quotes:
                last[quote.symbol] = by_id[(quote.symbol, quote.seq or 0)] = quote
            waiting.update(parser.snapshot_requests())
        elif stream.endswith("@bookTicker"):
            for quote in tickers.parse(frame, 0):
                ticks[(quote.symbol, quote.seq or 0)] = quote
    assert not waiting
    return last, by_id, ticks


def binance_reference(
    frames: list[tuple[float, str]], snapshots: dict[str, tuple[float, str]], symbol: str
) -> ReferenceBook:
    snapshot = orjson.loads(snapshots[symbol][1])
    book, last_id = ReferenceBook(1000), snapshot["lastUpdateId"]
    book.snapshot(snapshot["bids"], snapshot["asks"])
    for _, frame in frames:
        data = orjson.loads(frame)["data"]
        if data.get("e") == "depthUpdate" and BINANCE[data["s"]] == symbol and data["u"] > last_id:
            assert data["U"] <= last_id + 1  # the recording itself chains
            book.apply(data["b"], data["a"])
            last_id = data["u"]
    return book


def test_binance_books_align_with_their_snapshots_and_agree_with_bookticker(realdata: Path) -> None:
    frames, snapshots = binance_recording(realdata)
    refused: list[str] = []
    last, by_id, ticks = play_binance(frames, snapshots, refused)  # raises BookInvalid on any gap
    assert refused == []
    assert set(last) == set(BINANCE.values())
    for symbol, quote in last.items():
        reference = binance_reference(frames, snapshots, symbol)
        assert (quote.bids, quote.asks) == reference.top(len(reference.bids) + len(reference.asks)), symbol
    # A bookTicker carries the update id of the book it shows: where the book reached that id, both agree.
    same_id = sorted(set(by_id) & set(ticks))
    assert len(same_id) >= 20
    for key in same_id:
        book, tick = by_id[key], ticks[key]
        assert (book.bid, book.bid_qty, book.ask, book.ask_qty) == (
            tick.bid,
            tick.bid_qty,
            tick.ask,
            tick.ask_qty,
        )


@pytest.mark.parametrize("damage", ["drop", "digit"])
def test_binance_a_lost_diff_or_a_changed_update_id_is_a_gap(realdata: Path, damage: str) -> None:
    frames, snapshots = binance_recording(realdata)
    lrc = [i for i, (_, frame) in enumerate(frames) if '"s":"LRCBTC","U"' in frame]
    at = lrc[-3]  # well after LRCBTC's snapshot was loaded
    if damage == "drop":
        del frames[at]
    else:
        stamp, frame = frames[at]
        frames[at] = (stamp, change_digit(frame, '"U":'))
    refused: list[str] = []
    with pytest.raises(BookInvalid) as caught:
        play_binance(frames, snapshots, refused)
    assert (caught.value.symbol, caught.value.reason) == ("LRC-BTC", "gap")
    # A first id raised above the last is refused as it stands; the next event then shows the gap.
    assert len(refused) == (damage == "digit")


# ----- Bybit v5 `orderbook.500` (update ids) ---------------------------------------------------------


def bybit_frames(realdata: Path) -> list[str]:
    text = (realdata / "bybit" / "2024-12-01_XRPUSDT_ob500.data").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def test_bybit_500_level_book_chains_every_delta_and_ends_at_the_reference_book(realdata: Path) -> None:
    frames = bybit_frames(realdata)
    quotes = parse_all(build_adapter("bybit", ["XRP-USDT"], depth=500).new_parser(), frames)
    assert len(frames) == len(quotes) == 50 and quotes[-1].seq == 20254918
    reference = ReferenceBook(500)
    for frame in frames:
        data = orjson.loads(frame)["data"]
        (reference.snapshot if '"type":"snapshot"' in frame else reference.apply)(data["b"], data["a"])
    assert (quotes[-1].bids, quotes[-1].asks) == reference.top(500)
    assert len(quotes[-1].bids) == len(quotes[-1].asks) == 500


@pytest.mark.parametrize("damage", ["drop", "digit"])
def test_bybit_a_lost_delta_or_a_changed_update_id_is_a_gap(realdata: Path, damage: str) -> None:
    frames = bybit_frames(realdata)
    if damage == "drop":
        del frames[20]
    else:
        frames[20] = change_digit(frames[20], '"u":')
    parser = build_adapter("bybit", ["XRP-USDT"], depth=500).new_parser()
    with pytest.raises(BookInvalid) as caught:
        parse_all(parser, frames)
    assert caught.value.reason == "gap"


def test_bybit_ccxt_level_one_books_and_an_unsubscribed_channel(realdata: Path) -> None:
    cases = load_json(realdata / "bybit" / "ccxt_static_ws_bybit_spot_excerpt.json")["cases"]
    for case in cases:
        parser = build_adapter("bybit", ["BTC-USDT"]).new_parser()
        for message in case["messages"]:
            frame = to_frame(message)
            if not str(message.get("topic", "")).startswith("orderbook."):
                if "topic" in message:  # `tickers` carries no bid/ask: smartroute never subscribes to it
                    with pytest.raises(ParseError, match="unexpected topic"):
                        parser.parse(frame, 0)
                else:
                    assert parser.parse(frame, 0) == []  # the subscribe ack
                continue
            (quote,) = parser.parse(frame, 0)
            data = message["data"]
            assert (quote.bid, quote.bid_qty) == tuple(map(Decimal, data["b"][0]))
            assert (quote.ask, quote.ask_qty) == tuple(map(Decimal, data["a"][0]))
            assert quote.seq == int(data["u"])


# ----- OKX `books` (checksums; the 2022 recording predates seqId) -----------------------------------

OKX = {"BTC-USDT": "BTC-USDT", "BTC-USD-220527": "BTC-USD", "UNI-USD-SWAP": "UNI-USD"}


def okx_books(realdata: Path) -> dict[str, list[dict[str, Any]]]:
    """Each instrument's `books` pushes, numbered as OKX numbers them today (`prevSeqId`/`seqId`).

    Recorded in 2022, before OKX sent sequence ids: they are added here, one per push, so the
    production parser (which requires them) runs over the recorded levels and checksums.
    """
    pushes: dict[str, list[dict[str, Any]]] = {inst: [] for inst in OKX}
    for _, frame in timestamped(realdata / "okx" / "cryptofeed_OKX.ws.1.0.txt"):
        message = orjson.loads(frame)
        if message.get("arg", {}).get("channel") == "books" and "data" in message:
            pushes[message["arg"]["instId"]].append(message)
    for messages in pushes.values():
        for number, message in enumerate(messages, start=1000):
            message["data"][0]["prevSeqId"] = -1 if message["action"] == "snapshot" else number - 1
            message["data"][0]["seqId"] = number
    return pushes


def test_okx_books_verify_every_checksum_and_end_at_the_reference_book(realdata: Path) -> None:
    for inst, messages in okx_books(realdata).items():
        assert messages[0]["action"] == "snapshot" and all(m["data"][0]["checksum"] != 0 for m in messages)
        quotes = parse_all(BooksParser({inst: OKX[inst]}, 400), [orjson.dumps(m).decode() for m in messages])
        assert len(quotes) == len(messages) > 90, inst  # a quote after every push: every checksum held
        reference = ReferenceBook(400)
        for message in messages:
            data = message["data"][0]
            (reference.snapshot if message["action"] == "snapshot" else reference.apply)(
                data["bids"], data["asks"]
            )
        assert (quotes[-1].bids, quotes[-1].asks) == reference.top(400), inst


def test_okx_one_changed_digit_fails_the_checksum_unless_okx_sent_zero(realdata: Path) -> None:
    messages = okx_books(realdata)["BTC-USDT"]
    frames = [orjson.dumps(m).decode() for m in messages]
    at = 50
    damaged = change_digit(frames[at], '"bids":[["')
    parser = BooksParser({"BTC-USDT": "BTC-USDT"}, 400)
    parse_all(parser, frames[:at])
    with pytest.raises(BookInvalid) as caught:
        parser.parse(damaged, at)
    assert caught.value.reason == "checksum"
    # Since 23 Jun 2026 OKX sends `checksum: 0` on `books`: nothing to verify, the push applies.
    parser = BooksParser({"BTC-USDT": "BTC-USDT"}, 400)
    parse_all(parser, frames[:at])
    messages[at]["data"][0]["checksum"] = 0
    assert parser.parse(orjson.dumps(messages[at]).decode(), at)


def test_okx_ccxt_channels_smartroute_does_not_read_are_refused(realdata: Path) -> None:
    for case in load_json(realdata / "okx" / "ccxt_static_ws_okx_excerpt.json")["cases"]:
        parser = build_adapter("okx", ["BTC-USDT"]).new_parser()
        for message in case["messages"]:
            if "data" in message:  # books5 and tickers: smartroute subscribes to bbo-tbt and books
                with pytest.raises(ParseError):
                    parser.parse(to_frame(message), 0)
            else:
                assert parser.parse(to_frame(message), 0) == []  # the subscribe ack (with connId)


# ----- Coinbase Advanced Trade `ticker` (sequence_num) ---------------------------------------------


def coinbase_ticker(realdata: Path) -> list[dict[str, Any]]:
    cases = load_json(realdata / "coinbase" / "ccxt_static_ws_coinbase_excerpt.json")["cases"]
    messages: list[dict[str, Any]] = next(
        c["messages"] for c in cases if c["description"].endswith("(ticker)")
    )
    return messages


def test_coinbase_ticker_snapshot_before_the_subscriptions_ack_and_without_client_id(realdata: Path) -> None:
    messages = coinbase_ticker(realdata)
    assert [m["channel"] for m in messages] == ["ticker", "subscriptions", "ticker"]
    assert all("client_id" not in m for m in messages)
    quotes = parse_all(CoinbaseTickerParser({"BTC-USD": "BTC-USD"}), [to_frame(m) for m in messages])
    recorded = [m["events"][0]["tickers"][0] for m in messages if m["channel"] == "ticker"]
    assert [(q.bid, q.bid_qty, q.ask, q.ask_qty, q.seq) for q in quotes] == [
        (Decimal(t["best_bid"]), Decimal(t["best_bid_quantity"]), Decimal(t["best_ask"]),
         Decimal(t["best_ask_quantity"]), seq)
        for t, seq in zip(recorded, (0, 2), strict=True)
    ]  # fmt: skip


def test_coinbase_a_replayed_older_ticker_is_not_served(realdata: Path) -> None:
    frames = [to_frame(m) for m in coinbase_ticker(realdata)]
    parser = CoinbaseTickerParser({"BTC-USD": "BTC-USD"})
    assert [q.seq for q in parse_all(parser, frames)] == [0, 2]
    assert parser.parse(frames[0], 3) == []  # sequence_num 0 again: stale, never served over 2
