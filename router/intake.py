"""The answers to messages that never reach execution: unproven users and invalid requests.

`Intake.unauthenticated` answers a message whose user the signature does not
prove (`router.signatures`, via `router.access`): it claims nothing in the
ledger, and the message goes to the DLQ. `Intake.reject_invalid` answers a
message `router.validation` refused: with a well-formed request_id and user_id
it is claimed and completed `rejected` in the ledger (a redelivery replays it),
without them there is no result at all, only the DLQ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from connectors.types import Mode
from router.access import AccessPolicy
from router.errors import InvalidRequest
from router.ledger import Ledger
from router.metrics import ORDER_REQUESTS
from router.request import Request
from router.results import ExecutionResult
from router.signatures import Headers, Unauthenticated

__all__ = ["Handled", "Intake"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Handled:
    """The answer to one message: the result bytes to publish (if any) and what happened."""

    request_id: str | None
    result: bytes | None  # None: no well-formed request_id could be read, or the settler answers later
    executed: bool  # a new execution happened now
    replayed: bool  # the stored result of an earlier delivery
    invalid: InvalidRequest | None  # the message goes to the DLQ with this error


class Intake:
    """Authenticate each message's user and answer the ones that cannot be executed."""

    def __init__(self, ledger: Ledger, access: AccessPolicy, mode: Mode, clock_ns: Callable[[], int]) -> None:
        """Claim in `ledger`, authenticate with `access`; results carry `mode`, stamped by `clock_ns`."""
        self._ledger = ledger
        self._access = access
        self._mode = mode
        self._clock_ns = clock_ns

    def unauthenticated(
        self, raw: bytes, headers: Headers, now: int, read: Request | InvalidRequest
    ) -> Handled | None:
        """Answer a message that does not prove its user; it claims nothing in the ledger.

        `read` is what validation made of the message: its request_id, user_id and kind (each None
        on an InvalidRequest when absent or malformed), so the message is not decoded again here.
        """
        request_id, user_id, kind = read.request_id, read.user_id, read.kind
        try:
            self._access.authenticate_order(raw, headers, user_id)
        except Unauthenticated as exc:
            ORDER_REQUESTS.labels(status="rejected", reject_code=exc.reject_code).inc()
            log.warning(
                "order_unauthenticated",
                request_id=request_id,
                user_id=user_id,
                signer=exc.signer,
                error=exc.message,
            )
            error = InvalidRequest(
                exc.reject_code, exc.message, request_id=request_id, user_id=user_id, kind=kind
            )
            if request_id is None or user_id is None:
                return Handled(None, None, executed=False, replayed=False, invalid=error)
            result = self.rejected(request_id, user_id, kind, exc.reject_code, exc.message, now)
            return Handled(request_id, result.encode(), executed=False, replayed=False, invalid=error)
        return None

    async def reject_invalid(self, exc: InvalidRequest, raw: bytes, now: int) -> Handled:
        """Answer a request validation refused; one with a readable id is claimed and completed."""
        ORDER_REQUESTS.labels(status="rejected", reject_code=exc.reject_code).inc()
        if exc.request_id is None or exc.user_id is None:
            return Handled(None, None, executed=False, replayed=False, invalid=exc)
        claim = await self._ledger.aclaim(exc.request_id, exc.user_id, raw, now_ns=now)
        if claim.status == "done":
            return Handled(exc.request_id, claim.result, executed=False, replayed=True, invalid=exc)
        result = self.rejected(exc.request_id, exc.user_id, exc.kind, exc.reject_code, exc.message, now)
        encoded = result.encode()
        if claim.status == "new":
            await self._ledger.acomplete(exc.request_id, encoded, now_ns=self._clock_ns())
        return Handled(exc.request_id, encoded, executed=False, replayed=False, invalid=exc)

    def rejected(
        self,
        request_id: str,
        user_id: str,
        kind: str | None,
        code: str,
        message: str,
        received_ns: int,
        route: dict[str, object] | None = None,
    ) -> ExecutionResult:
        """Return the `rejected` result of a request, completed now."""
        return ExecutionResult(
            request_id=request_id,
            user_id=user_id,
            kind=kind,
            mode=self._mode,
            status="rejected",
            reject_code=code,
            message=message,
            received_ns=received_ns,
            completed_ns=self._clock_ns(),
            route=route,
        )
