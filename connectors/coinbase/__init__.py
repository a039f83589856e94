"""Coinbase Advanced Trade: top of book and depth from `level2` books kept in sync by `sequence_num`."""

from connectors.coinbase.level2 import Level2Parser
from connectors.coinbase.parse import TickerParser
from connectors.coinbase.stream import CoinbaseAdapter

__all__ = ["CoinbaseAdapter", "Level2Parser", "TickerParser"]
