"""What the server answers when it refuses a request: RFC 6750 challenges and their bodies.

- 401, no token: ``WWW-Authenticate: Bearer resource_metadata="…", scope="…"`` and no error code
  (RFC 6750 §3.1: a request without credentials gets no error information).
- 401, a token that is not acceptable: the same plus ``error="invalid_token"`` and a description.
- 403, a valid token without the tool's scope: ``error="insufficient_scope"``, ``scope`` = that scope.
- 503, the token cannot be checked now (keys or introspection unreachable): ``Retry-After``.
- 400, a malformed request: a JSON-RPC error object.

``scope`` always names what the request needs: the base scopes every request needs (the IdP scope
that gives the token its subject) plus, for ``tools/call``, the tool's own scope.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import JSONResponse

#: RFC 6750 §3: error_description uses %x20-21 / %x23-5B / %x5D-7E only.
_NOT_NQSCHAR = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def _quoted(value: str) -> str:
    return '"' + _NOT_NQSCHAR.sub("?", value) + '"'


def www_authenticate(
    *, resource_metadata: str, scope: str | None = None, error: str | None = None, description: str | None = None
) -> str:
    params = []
    if error:
        params.append(f"error={_quoted(error)}")
        if description:
            params.append(f"error_description={_quoted(description)}")
    if scope:
        params.append(f"scope={_quoted(scope)}")
    params.append(f"resource_metadata={_quoted(resource_metadata)}")
    return "Bearer " + ", ".join(params)


def unauthorized(*, resource_metadata: str, scope: str | None, description: str | None = None) -> JSONResponse:
    """401: ``description`` None means no token was presented."""
    error = "invalid_token" if description is not None else None
    header = www_authenticate(resource_metadata=resource_metadata, scope=scope, error=error, description=description)
    body = {"error": error or "unauthorized", "error_description": description or "a bearer token is required"}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": header})


def unbound(
    *, scheme: str, error: str, description: str, resource_metadata: str, algorithms: tuple[str, ...]
) -> JSONResponse:
    """401 for a sender-constrained token the request does not prove it holds (RFC 9449 §7.1, RFC 8705 §3).

    The ``DPoP`` challenge names the proof algorithms this server takes (``algs``).
    """
    header = www_authenticate(resource_metadata=resource_metadata, error=error, description=description)
    if scheme == "DPoP":
        header = "DPoP " + header.removeprefix("Bearer ") + f", algs={_quoted(' '.join(algorithms))}"
    body = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": header})


def forbidden(*, resource_metadata: str, scope: str, description: str) -> JSONResponse:
    header = www_authenticate(
        resource_metadata=resource_metadata, scope=scope, error="insufficient_scope", description=description
    )
    body = {"error": "insufficient_scope", "error_description": description, "scope": scope}
    return JSONResponse(body, status_code=403, headers={"WWW-Authenticate": header})


def outside_zone(*, zone: str, source: str | None) -> JSONResponse:
    """403: the agent's token limits it to a network zone, and this request comes from another address."""
    description = f"this agent may call only from its network zone {zone}, not from {source or 'an unknown address'}"
    body = {"error": "outside_zone", "error_description": description, "zone": zone}
    return JSONResponse(body, status_code=403)


def invalid_request(*, resource_metadata: str, scope: str | None) -> JSONResponse:
    """400: the request is ambiguous about its credentials (RFC 6750 §3.1 ``invalid_request``)."""
    description = "send exactly one Authorization header"
    header = www_authenticate(
        resource_metadata=resource_metadata, scope=scope, error="invalid_request", description=description
    )
    body = {"error": "invalid_request", "error_description": description}
    return JSONResponse(body, status_code=400, headers={"WWW-Authenticate": header})


def unavailable(description: str) -> JSONResponse:
    body = {"error": "temporarily_unavailable", "error_description": description}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


def too_many_refusals(retry_after: int) -> JSONResponse:
    """429: this caller was refused too many tool calls lately (see :mod:`sandbox.mcp_server.throttle`)."""
    body = {
        "error": "too_many_requests",
        "error_description": f"too many refused tool calls; retry after {retry_after} s",
    }
    return JSONResponse(body, status_code=429, headers={"Retry-After": str(retry_after)})


def bad_request(message: str, *, code: int = -32600, request_id: Any = None) -> JSONResponse:
    """400 with a JSON-RPC error (``-32700`` parse error, ``-32600`` invalid request, ``-32602`` invalid params)."""
    body = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=400)
