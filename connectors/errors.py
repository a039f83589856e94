"""The project's error tree. Every error smartroute raises derives from SmartrouteError.

    SmartrouteError
     ├── ParseError              a venue frame that cannot be understood: counted and skipped
     ├── VenueError              something a venue did or failed to do
     │    ├── VenueConnectionError   connect failed, socket dropped, handshake refused
     │    └── ReconnectRequested     the venue asked us to reconnect (Binance serverShutdown)
     ├── router.errors.*         decisions and execution (defined in `router`)
     └── daemon.errors.*         configuration and runtime (defined in `daemon`)

Foreign errors (websockets, aiokafka, python-binance, aiohttp) are mapped at the
boundary with `raise ... from exc`.
"""

from __future__ import annotations


class SmartrouteError(Exception):
    """Root of every error smartroute raises on purpose."""


class ParseError(SmartrouteError):
    """A venue frame that is not valid JSON or not the documented shape."""


class VenueError(SmartrouteError):
    """A venue misbehaved or could not be reached."""


class VenueConnectionError(VenueError):
    """Opening, keeping or reading a venue connection failed."""


class ReconnectRequested(VenueError):
    """The venue announced it is closing this connection; reconnect at once, without backoff."""
