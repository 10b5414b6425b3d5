"""The platform operator's access token: the master realm's admin service account, by client credentials."""

from __future__ import annotations

import httpx

from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.idp.realm import operator_credentials
from sandbox.issued import remember_answer
from sandbox.oidc import discover


def operator_token(settings: Settings) -> str:
    """A fresh access token of the platform operator, from the master realm's token endpoint."""
    client_id, secret = operator_credentials(settings)
    token_url = discover(settings.issuer("master")).token_endpoint
    try:
        response = httpx.post(
            token_url,
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
            timeout=30,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        raise SandboxError(
            f"the operator's token request to {token_url} failed ({type(exc).__name__})",
            "check that the IdP is up (`mcp-sandbox status`)",
        ) from exc
    if response.status_code != 200:
        raise SandboxError(
            f"the IdP refused the operator's token ({response.status_code}: {response.text[:160]})",
            f"check the operator's client {client_id} in the master realm",
        )
    answer = response.json()
    remember_answer(answer)
    return str(answer["access_token"])
