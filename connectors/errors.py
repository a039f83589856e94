"""The project's error tree. Every error smartroute raises derives from SmartrouteError.

    SmartrouteError
     ├── ParseError              a venue frame that cannot be understood: counted and skipped
     ├── VenueError              something a venue did or failed to do
     │    ├── VenueConnectionError   connect failed, socket dropped, handshake refused
     │    │    └── VenueUnreachable      no connection could be opened: nothing was sent
     │    ├── ReconnectRequested     the venue asked us to reconnect (Binance serverShutdown)
     │    ├── VenueRejected          a venue answered a REST request and refused it: nothing executed
     │    │    ├── OrderNotFound         no order with that client id
     │    │    ├── DuplicateOrder        that client id is taken: the order exists, query it
     │    │    └── ClockRejected         our timestamp or nonce fell outside the venue's window
     │    ├── OutcomeUnknown         the request may or may not have executed: only a query can tell
     │    │    └── OrderAcknowledged     the venue took the order, but its state could not be read yet
     │    ├── RateLimited            throttled (nothing executed): wait `retry_after_s` first
     │    ├── VenueBanned            banned until `until_s`: nothing is sent meanwhile
     │    └── OrderRuleViolation     the order breaks the symbol's rules; refused before sending
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


class VenueUnreachable(VenueConnectionError):
    """No connection to the venue could be opened, so the request never left this process."""


class VenueRejected(VenueError):
    """The venue answered with an error: the request was refused and nothing executed.

    `code` is the venue's own error code (a number on most venues, a string such as
    `EOrder:Insufficient funds` on Kraken); `status` the HTTP status.
    """

    def __init__(self, code: int | str, message: str, status: int, *, venue: str) -> None:
        super().__init__(f"{venue} refused the request: HTTP {status}, code {code}: {message}")
        self.venue = venue
        self.code = code
        self.message = message
        self.status = status


class OrderNotFound(VenueRejected):
    """The venue has no order with the given client id."""


class DuplicateOrder(VenueRejected):
    """An order already carries this client order id: the order exists, query it."""


class ClockRejected(VenueRejected):
    """The request's timestamp or nonce was outside the venue's window; it was not executed."""


class OutcomeUnknown(VenueError):
    """The request may or may not have been executed; only a query can tell."""


class OrderAcknowledged(OutcomeUnknown):
    """The venue acknowledged the order (`venue_order_id`) but no answer or query shows its state yet.

    The order exists: "not found" must never be taken as final for it, however long it
    stays invisible. It is settled by querying until it appears.
    """

    def __init__(self, message: str, venue_order_id: str) -> None:
        super().__init__(message)
        self.venue_order_id = venue_order_id


class RateLimited(VenueError):
    """The venue or the local limiter holds requests back for `retry_after_s` seconds; nothing executed."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class VenueBanned(VenueError):
    """The venue banned this client until `until_s` (seconds, limiter clock); nothing is sent."""

    def __init__(self, message: str, until_s: float) -> None:
        super().__init__(message)
        self.until_s = until_s


class OrderRuleViolation(VenueError):
    """An order breaks the symbol's exchange rules (filters, status); it is refused before sending."""
