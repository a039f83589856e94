"""Recordings: what is written is read back exactly; a damaged file fails clearly, naming where."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from connectors.errors import SmartrouteError
from connectors.recording import FORMAT, Record, RecordingError, RecordingReader, RecordingWriter

SYMBOLS = {"binance": ["BTC-USDT", "ETH-USDT"], "bybit": ["BTC-USDT"]}
TEXT_FRAME = '{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"}}'
BINARY_FRAME = bytes(range(256))


def write_sample(path: Path) -> list[Record]:
    records = [
        Record("connect", "binance", 1_000),
        Record("frame", "binance", 1_001, TEXT_FRAME),
        Record("connect", "bybit", 1_002),
        Record("frame", "bybit", 1_003, BINARY_FRAME),
        Record("frame", "binance", 1_004, 'unicode ✓ "quoted" \\ and\nnewline'),
    ]
    with RecordingWriter(path, SYMBOLS, created_ns=42) as writer:
        for record in records:
            if record.kind == "connect":
                writer.write_connect(record.venue, record.received_ns)
            else:
                assert record.frame is not None
                writer.write_frame(record.venue, record.frame, record.received_ns)
    return records


def read_all(path: Path) -> list[Record]:
    with RecordingReader(path) as reader:
        return list(reader)


def test_text_and_binary_frames_and_connects_read_back_exactly_in_order(tmp_path: Path) -> None:
    path = tmp_path / "session.rec.gz"
    written = write_sample(path)
    with RecordingReader(path) as reader:
        assert reader.header.venues == ("binance", "bybit")
        assert reader.header.symbols == {"binance": ("BTC-USDT", "ETH-USDT"), "bybit": ("BTC-USDT",)}
        assert reader.header.created_ns == 42
        assert list(reader) == written


def test_the_file_is_gzip_json_lines_with_the_documented_header(tmp_path: Path) -> None:
    path = tmp_path / "session.rec.gz"
    write_sample(path)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    assert orjson.loads(lines[0]) == {
        "format": FORMAT,
        "version": 1,
        "venues": ["binance", "bybit"],
        "symbols": {"binance": ["BTC-USDT", "ETH-USDT"], "bybit": ["BTC-USDT"]},
        "created_ns": 42,
    }
    assert orjson.loads(lines[2]) == {
        "kind": "frame",
        "venue": "binance",
        "received_ns": 1_001,
        "frame": TEXT_FRAME,
    }
    assert set(orjson.loads(lines[4])) == {"kind", "venue", "received_ns", "frame_b64"}


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keep.rec.gz"
    path.write_bytes(b"precious")
    with pytest.raises(RecordingError, match=r"keep\.rec\.gz"):
        RecordingWriter(path, SYMBOLS)
    assert path.read_bytes() == b"precious"


def test_a_frame_of_a_venue_outside_the_header_is_refused(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "r.gz", SYMBOLS) as writer, pytest.raises(ValueError, match="okx"):
        writer.write_frame("okx", "{}", 1)


def test_a_truncated_file_yields_every_complete_record_then_names_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "cut.rec.gz"
    written = write_sample(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 12])  # the gzip trailer and some data are gone
    delivered: list[Record] = []
    with RecordingReader(path) as reader, pytest.raises(RecordingError) as caught:
        delivered.extend(reader)
    assert isinstance(caught.value, SmartrouteError)
    assert str(path) in str(caught.value) and "offset" in str(caught.value)
    assert delivered == written[: len(delivered)]


def test_a_crashed_writer_leaves_what_it_flushed_readable(tmp_path: Path) -> None:
    path = tmp_path / "crash.rec.gz"
    writer = RecordingWriter(path, SYMBOLS, created_ns=1)
    writer.write_frame("binance", TEXT_FRAME, 10)
    writer.flush()  # the process dies here: no close(), no gzip trailer
    assert writer.records == 1
    delivered: list[Record] = []
    with RecordingReader(path) as reader, pytest.raises(RecordingError, match="truncated"):
        delivered.extend(reader)
    assert delivered == [Record("frame", "binance", 10, TEXT_FRAME)]
    writer.close()


def gzip_lines(path: Path, *lines: bytes) -> None:
    path.write_bytes(gzip.compress(b"".join(lines)))


HEADER = orjson.dumps({"format": FORMAT, "version": 1, "venues": ["binance"], "symbols": {"binance": []},
                       "created_ns": 0}) + b"\n"  # fmt: skip
GOOD = b'{"kind":"frame","venue":"binance","received_ns":5,"frame":"{}"}\n'


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        (b"{not json\n", "not JSON"),
        (b'{"kind":"frame","venue":"kraken","received_ns":5,"frame":"{}"}\n', "kraken"),
        (b'{"kind":"trade","venue":"binance","received_ns":5}\n', "unknown record kind"),
        (b'{"kind":"frame","venue":"binance","received_ns":"5","frame":"{}"}\n', "received_ns"),
        (b'{"kind":"frame","venue":"binance","received_ns":5}\n', "exactly one of"),
        (b'{"kind":"frame","venue":"binance","received_ns":5,"frame_b64":"***"}\n', "base64"),
        (b'{"kind":"frame","venue":"binance","received_ns":5,"frame":"{}"}', "no end of line"),
    ],
)
def test_a_bad_record_names_its_line_and_uncompressed_offset(
    tmp_path: Path, bad_line: bytes, problem: str
) -> None:
    path = tmp_path / "bad.rec.gz"
    gzip_lines(path, HEADER, GOOD, bad_line)
    with RecordingReader(path) as reader:
        records = iter(reader)
        assert next(records) == Record("frame", "binance", 5, "{}")
        with pytest.raises(RecordingError, match=problem) as caught:
            next(records)
    assert caught.value.offset == len(HEADER) + len(GOOD)
    assert "line 3" in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"plain text, not gzip", "corrupt"),
        (gzip.compress(b"", mtime=0), "empty file"),
        (gzip.compress(b'{"format":"something-else","version":1}\n', mtime=0), "not a smartroute recording"),
        (
            gzip.compress(HEADER.replace(b'"version":1', b'"version":99'), mtime=0),
            "unsupported recording version",
        ),
    ],
)  # mtime=0: the same bytes, hence the same test ids, in every process (pytest-xdist compares them)
def test_a_file_that_is_not_a_recording_is_refused_at_open(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "other.gz"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=problem):
        RecordingReader(path)


def test_a_missing_file_is_a_recording_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot open"):
        RecordingReader(tmp_path / "absent.gz")
