"""Replay: a recording of frames gives the same opportunity events, byte for byte, every time."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from connectors.recording import Record, RecordingError, RecordingHeader, RecordingReader, RecordingWriter
from connectors.sim import ExchangeSimulator
from daemon.config import Config, load_config
from daemon.record import record, replay_file, replay_settings
from router.replay import ReplayError, ReplaySettings, ReplayStats, replay

DEFAULTS = Config()  # the settings `smartroute replay` uses without --config

REPO = Path(__file__).resolve().parents[2]
SECOND = 1_000_000_000
T0 = 1_764_000_000 * SECOND
SYMBOLS = {"binance": ["BTC-USDT", "ETH-USDT"], "bybit": ["BTC-USDT", "ETH-USDT"]}
SETTINGS = ReplaySettings(taker_fee_bps={"binance": Decimal(10), "bybit": Decimal(10)})


def binance(symbol: str, u: int, bid: str, bid_qty: str, ask: str, ask_qty: str) -> str:
    data = {"u": u, "s": symbol, "b": bid, "B": bid_qty, "a": ask, "A": ask_qty}
    return orjson.dumps({"stream": f"{symbol.lower()}@bookTicker", "data": data}).decode()


def bybit(
    symbol: str, u: int, bids: list[list[str]], asks: list[list[str]], kind: str = "snapshot", *, sent_ms: int
) -> str:
    """A Bybit frame the venue stamped `sent_ms` after T0 (freshness also reads the exchange's time)."""
    data = {"s": symbol, "b": bids, "a": asks, "u": u, "seq": u}
    message = {"topic": f"orderbook.1.{symbol}", "type": kind, "ts": T0 // 1_000_000 + sent_ms, "data": data}
    return orjson.dumps(message).decode()


def session() -> list[Record]:
    """Two venues, two symbols: opportunities open, move, go stale, open again, and the spread closes."""
    frames = [
        ("connect", "binance", 0, None),
        ("frame", "binance", 0, '{"result":null,"id":1}'),
        ("frame", "binance", 1, binance("BTCUSDT", 10, "63990.00", "1.0", "64000.00", "0.5")),
        ("frame", "binance", 2, binance("ETHUSDT", 11, "3199.00", "5", "3200.00", "5")),
        ("connect", "bybit", 3, None),
        (
            "frame",
            "bybit",
            3,
            '{"success":true,"ret_msg":"","conn_id":"x","req_id":"subscribe-1","op":"subscribe"}',
        ),
        ("frame", "bybit", 4, bybit("BTCUSDT", 1, [["64200.00", "0.3"]], [["64210.00", "1.0"]], sent_ms=3)),
        ("frame", "bybit", 5, bybit("ETHUSDT", 1, [["3230.00", "2"]], [["3231.00", "2"]], sent_ms=4)),
        ("frame", "binance", 6, binance("BTCUSDT", 12, "63890.00", "1.0", "63900.00", "0.5")),
        ("frame", "binance", 7, "not json at all"),
        # Nothing for 2 s: every quote goes stale and the sweep closes what is open.
        ("frame", "binance", 2_007, binance("BTCUSDT", 13, "63990.00", "1.0", "64000.00", "0.5")),
        (
            "frame",
            "bybit",
            2_008,
            bybit(
                "BTCUSDT",
                2,
                [["64200.00", "0"], ["64300.00", "0.2"]],
                [["64210.00", "0"], ["64310.00", "1.0"]],
                "delta",
                sent_ms=2_007,
            ),
        ),
        (
            "frame",
            "bybit",
            2_009,
            bybit("BTCUSDT", 3, [["63995.00", "1.0"]], [["64005.00", "1.0"]], "snapshot", sent_ms=2_008),
        ),
        # A new bybit connection: its parser starts empty, so a delta before any snapshot is rejected.
        ("connect", "bybit", 2_010, None),
        (
            "frame",
            "bybit",
            2_011,
            bybit("BTCUSDT", 4, [["64300.00", "0.2"]], [["64310.00", "1.0"]], "delta", sent_ms=2_010),
        ),
    ]
    return [Record(kind, venue, T0 + ms * 1_000_000, frame) for kind, venue, ms, frame in frames]  # type: ignore[arg-type]


def header() -> RecordingHeader:
    return RecordingHeader(
        venues=tuple(SYMBOLS), symbols={v: tuple(s) for v, s in SYMBOLS.items()}, created_ns=T0
    )


def replayed(records: list[Record]) -> tuple[bytes, ReplayStats]:
    out = io.BytesIO()
    stats = replay(header(), records, out, SETTINGS)
    return out.getvalue(), stats


def test_replaying_twice_gives_identical_bytes() -> None:
    first, first_stats = replayed(session())
    second, second_stats = replayed(session())
    assert first == second
    assert first_stats == second_stats
    assert first_stats.events >= 4


def test_events_follow_the_recorded_time_and_the_book_changes() -> None:
    output, stats = replayed(session())
    events = [orjson.loads(line) for line in output.splitlines()]
    summary = [(e["event"], e["symbol"], e["buy_venue"], e["sell_venue"], e["detected_ns"]) for e in events]
    ms = 1_000_000
    assert summary == [
        ("opened", "BTC-USDT", "binance", "bybit", T0 + 4 * ms),
        ("opened", "ETH-USDT", "binance", "bybit", T0 + 5 * ms),
        ("updated", "BTC-USDT", "binance", "bybit", T0 + 6 * ms),
        # The sweep after the 1.5 s freshness limit, on the 100 ms grid that started with the first record.
        ("closed", "BTC-USDT", "binance", "bybit", T0 + 1_600 * ms),
        ("closed", "ETH-USDT", "binance", "bybit", T0 + 1_600 * ms),
        ("opened", "BTC-USDT", "binance", "bybit", T0 + 2_008 * ms),
        ("closed", "BTC-USDT", "binance", "bybit", T0 + 2_009 * ms),
    ]
    opened = events[0]
    # Buy binance @ 64000, sell bybit @ 64200, 10 bps each, size min(0.5, 0.3) capped at 10000/64000.
    assert (opened["quantity"], opened["buy_price"], opened["sell_price"]) == ("0.15625", "64000", "64200")
    assert opened["buy_quote_age_ms"] == 3.0 and opened["sell_quote_age_ms"] == 0.0
    assert opened["expires_ns"] == T0 + 4 * ms + 1_497 * ms
    assert events[2]["buy_price"] == "63900" and events[2]["id"] == opened["id"]
    assert stats == ReplayStats(
        records=15, frames=12, connects=3, quotes=8, parse_errors=1, reconnects_requested=0, events=7,
        books_withdrawn=1,  # the bybit delta before any snapshot on the new connection
    )  # fmt: skip


def test_output_lines_are_json_objects_with_sorted_keys() -> None:
    output, _ = replayed(session())
    for line in output.splitlines():
        keys = list(orjson.loads(line))
        assert keys == sorted(keys)


def test_a_binance_server_shutdown_is_counted_and_replay_goes_on() -> None:
    shutdown = '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1764000000000}}'
    records = [*session()[:4], Record("frame", "binance", T0 + 2_500_000, shutdown), *session()[4:]]
    _, stats = replayed(records)
    assert stats.reconnects_requested == 1 and stats.events == 7


def test_a_venue_without_a_taker_fee_is_refused() -> None:
    settings = ReplaySettings(taker_fee_bps={"binance": Decimal(10)})
    with pytest.raises(ReplayError, match="bybit"):
        replay(header(), session(), io.BytesIO(), settings)


def test_a_venue_without_a_parser_is_refused() -> None:
    odd = RecordingHeader(venues=("nowhere",), symbols={"nowhere": ("BTC-USDT",)}, created_ns=0)
    with pytest.raises(ReplayError, match="nowhere"):
        replay(odd, [], io.BytesIO(), ReplaySettings(taker_fee_bps={"nowhere": Decimal(1)}))


def write_recording(path: Path, records: list[Record]) -> None:
    with RecordingWriter(path, SYMBOLS, created_ns=T0) as writer:
        for r in records:
            if r.kind == "connect":
                writer.write_connect(r.venue, r.received_ns)
            else:
                assert r.frame is not None
                writer.write_frame(r.venue, r.frame, r.received_ns)


def test_a_recording_file_round_trips_into_the_same_events(tmp_path: Path) -> None:
    path = tmp_path / "session.rec.gz"
    write_recording(path, session())
    out = tmp_path / "events.jsonl"
    stats = replay_file(replay_settings(DEFAULTS.detector, DEFAULTS.cache, DEFAULTS.venues), path, out)
    assert out.read_bytes() == replayed(session())[0]
    assert stats.events == 7


def test_the_cli_gives_the_same_bytes_in_processes_with_different_hash_seeds(tmp_path: Path) -> None:
    path = tmp_path / "session.rec.gz"
    write_recording(path, session())
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"events-{seed}.jsonl"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-m", "daemon.cli", "replay", str(path), "--out", str(out)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert orjson.loads(done.stdout)["events"] == 7
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == replayed(session())[0]


def test_a_corrupt_recording_leaves_no_partial_events_file(tmp_path: Path) -> None:
    path = tmp_path / "session.rec.gz"
    write_recording(path, session())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    out = tmp_path / "events.jsonl"
    with pytest.raises(RecordingError, match=r"session\.rec\.gz"):
        replay_file(replay_settings(DEFAULTS.detector, DEFAULTS.cache, DEFAULTS.venues), path, out)
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.integration
async def test_recording_the_simulator_then_replaying_it_reproduces_the_opportunity(tmp_path: Path) -> None:
    """Round trip on loopback: record → file → replay gives the opportunity the frames hold."""
    async with ExchangeSimulator(("binance", "bybit"), ("BTC-USDT",), autoplay=False) as sim:
        config = tmp_path / "smartroute.toml"
        config.write_text(
            f'[venues.binance]\nsymbols = ["BTC-USDT"]\nws_url = "{sim.ws_url("binance")}"\n'
            f'[venues.bybit]\nsymbols = ["BTC-USDT"]\nws_url = "{sim.ws_url("bybit")}"\n'
        )
        cfg = load_config(config, environ={})
        path = tmp_path / "live.rec.gz"
        stop = asyncio.Event()
        async with asyncio.timeout(10):
            recording = asyncio.create_task(record(cfg.venues, path, stop))
            for venue in ("binance", "bybit"):
                await sim.wait_subscribed(venue, "BTC-USDT")
            await sim.push_quote("binance", "BTC-USDT", "63990.00", "1.00000", "64000.00", "0.50000")
            await sim.push_quote("bybit", "BTC-USDT", "64200.00", "0.30000", "64210.00", "1.00000")
            for venue in ("binance", "bybit"):
                await sim.flush(venue)
            while not quotes_recorded(path):  # noqa: ASYNC110 - a file written by another task
                await asyncio.sleep(0.05)  # the recorder flushes to the file every second
            stop.set()
            summary = await recording
    assert summary.connects == {"binance": 1, "bybit": 1}
    with RecordingReader(path) as reader:
        kinds = [(r.kind, r.venue) for r in reader]
    assert kinds.count(("connect", "binance")) == 1 and kinds.count(("connect", "bybit")) == 1
    out = tmp_path / "events.jsonl"
    replay_file(replay_settings(cfg.detector, cfg.cache, cfg.venues), path, out)
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert events[0]["event"] == "opened"
    assert (events[0]["buy_venue"], events[0]["sell_venue"], events[0]["net_profit"]) == (
        "binance",
        "bybit",
        "11.21875",
    )


def quotes_recorded(path: Path) -> bool:
    """Tell whether both pushed quotes reached the file so far."""
    frames: list[str] = []
    try:
        with RecordingReader(path) as reader:
            frames.extend(str(r.frame) for r in reader if r.kind == "frame")
    except RecordingError:
        pass  # a file still being written ends without its gzip trailer
    return any("64000.00" in f for f in frames) and any("64200.00" in f for f in frames)
