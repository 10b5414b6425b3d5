"""What every router of the broker shares: the caller, the service, and the error answers it documents."""

from __future__ import annotations

import base64
import contextlib
from typing import Annotated, Any
from urllib.parse import unquote_plus

from fastapi import Depends, Header, Request

from sandbox.broker import schemas
from sandbox.broker.auth import Authenticator, AuthError, Principal
from sandbox.broker.service import BrokerService


async def _principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.authenticate(authorization)


def _service(request: Request) -> BrokerService:
    return request.app.state.service  # type: ignore[no-any-return]


def basic(authorization: str | None) -> tuple[str, str]:
    """An agent's client id and secret from HTTP Basic (RFC 6749 2.3.1: each form-urlencoded)."""
    if authorization and authorization.lower().startswith("basic "):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            client_id, _, secret = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
            if client_id and secret:
                return unquote_plus(client_id), unquote_plus(secret)
    raise AuthError(401, "invalid_client", "send the agent's client id and current secret as HTTP Basic")


Caller = Annotated[Principal, Depends(_principal)]
Service = Annotated[BrokerService, Depends(_service)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.Error} for code in (400, 401, 403, 404, 409, 422, 503)
}
