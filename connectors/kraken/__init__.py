"""Kraken WebSocket v2: `ticker` (BBO trigger) top of book or `book` depth verified by its CRC32 checksum."""

from connectors.kraken.book import BookParser
from connectors.kraken.parse import TickerParser
from connectors.kraken.stream import KrakenAdapter

__all__ = ["BookParser", "KrakenAdapter", "TickerParser"]
