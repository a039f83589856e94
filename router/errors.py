"""Errors of the decision layer (the `router.errors` subtree of `connectors.errors`).

SmartrouteError
 └── RouterError
      ├── InvalidRequest     an order request that must be rejected; carries reject_code and request_id
      ├── LedgerError        the durable ledger cannot be opened, read or written
      ├── ExecutionError     an executor could not settle an execution
      └── ResultNotPublished a settled request's result was not acknowledged by the results topic
"""

from __future__ import annotations

from connectors.errors import SmartrouteError


class RouterError(SmartrouteError):
    """Root of the decision layer's errors."""


class InvalidRequest(RouterError):
    """An order request that is rejected before anything executes.

    `reject_code` is the contract's machine-readable code; `str(exc)` is the
    human sentence. `request_id`/`user_id`/`kind` are set when they could be
    read and are well-formed, so a `rejected` result can be emitted for them.
    """

    def __init__(
        self,
        reject_code: str,
        message: str,
        *,
        request_id: str | None = None,
        user_id: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reject_code = reject_code
        self.message = message
        self.request_id = request_id
        self.user_id = user_id
        self.kind = kind


class LedgerError(RouterError):
    """The ledger cannot be used; the router must not execute anything without it."""


class LeaseLost(LedgerError):
    """This router no longer holds the request's claim (another took it over): act no more on it."""


class ExecutionError(RouterError):
    """An executor failed in a way it could not settle by itself."""


class ResultNotPublished(RouterError):
    """A result could not be published (the transport's error is its cause); it is sent again later."""
