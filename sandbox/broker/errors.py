"""Errors of the broker's operations, each with the HTTP status the API answers and a one-line cause and fix."""

from __future__ import annotations

from typing import Any

from sandbox.errors import SandboxError


class BrokerError(SandboxError):
    status = 400
    code = "bad_request"

    def __init__(self, cause: str, fix: str, **details: Any) -> None:
        super().__init__(cause, fix)
        self.details = details


class BadRequest(BrokerError):
    pass


class NotFound(BrokerError):
    status = 404
    code = "not_found"


class Conflict(BrokerError):
    status = 409
    code = "conflict"


class PolicyRefused(BrokerError):
    status = 422
    code = "policy_violation"


class Forbidden(BrokerError):
    status = 403
    code = "forbidden"


class MfaRequired(BrokerError):
    """RFC 9470 step-up: the act needs a login with a second factor."""

    status = 401
    code = "insufficient_user_authentication"


class IdpFailed(BrokerError):
    status = 503
    code = "idp_unavailable"


class IdpLacks(BrokerError):
    """The tenant's agents' IdP lacks what the act needs (``not supported by <idp>: <reason>``)."""

    status = 501
    code = "not_supported_by_idp"


class StorageFailed(BrokerError):
    status = 503
    code = "storage_unavailable"
