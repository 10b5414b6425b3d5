"""A small HTTP client of the broker's API, for the CLI, ``apply`` and tests."""

from __future__ import annotations

from typing import Any

import httpx

from sandbox.errors import SandboxError
from sandbox.issued import remember_answer
from sandbox.loopback import KEEPALIVE


class BrokerRefused(SandboxError):
    """The broker answered with an error: its status, code and one-line detail."""

    def __init__(self, status: int, error: str, cause: str, fix: str, body: dict[str, Any]) -> None:
        self.status = status
        self.error = error
        self.body = body
        super().__init__(f"broker refused ({status} {error}): {cause}", fix)


class BrokerClient:
    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, limits=KEEPALIVE)
        self.base_url = base_url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.InvalidURL as exc:  # a tenant or an agent id that cannot be part of a URL
            raise SandboxError(
                f"{path!r} cannot be sent to the broker ({exc})", "check the tenant name and agent id given"
            ) from None
        except httpx.HTTPError as exc:
            raise SandboxError(
                f"the broker at {self.base_url} is unreachable ({type(exc).__name__})",
                "start the stack with `mcp-sandbox up` (or check SANDBOX_BROKER_PORT)",
            ) from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:200]}
            if not isinstance(body, dict):
                body = {"detail": str(body)[:200]}
            cause = body.get("cause") or body.get("detail") or response.reason_phrase
            fix = body.get("fix") or _fix_for(response.status_code)
            raise BrokerRefused(response.status_code, str(body.get("error", "error")), str(cause), str(fix), body)
        answer = response.json() if response.content else None
        remember_answer(answer)  # credentials shown once; recorded only when a test run keeps a registry
        return answer

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=body or {})


def _fix_for(status: int) -> str:
    if status == 401:
        return "log in with `mcp-sandbox admin login` and pass the token (--token or SANDBOX_BROKER_TOKEN)"
    if status == 422:
        return "fix the request fields named"
    return "see the broker's log: mcp-sandbox logs broker"
