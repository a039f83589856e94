"""OKX v5 public WebSocket: `bbo-tbt` top of book, or `books` depth kept in sync by seqId and REST."""

from connectors.okx.books import BooksParser
from connectors.okx.parse import BboParser
from connectors.okx.stream import OkxAdapter

__all__ = ["BboParser", "BooksParser", "OkxAdapter"]
