"""The agent's side of an automatic rotation: take the new client secret from the broker with the old one.

When the broker rotates an old secret itself (credential age policy, ``rotate: automatic``), the old secret keeps
working for the policy's grace. In that time the agent (or whatever keeps its secret file) asks
``POST /agent-credential`` with HTTP Basic (client id, current secret) and gets the new secret. Writing it to the
file a generated MCP config names keeps that config working.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote_plus

import httpx


class PickupFailed(Exception):
    """The broker could not be asked, or answered something other than a secret or "nothing awaits"."""


async def pick_up_secret(http: httpx.AsyncClient, broker_url: str, client_id: str, secret: str) -> str | None:
    """The new secret of an automatic rotation, or None when none awaits this client and secret."""
    try:
        response = await http.post(
            f"{broker_url.rstrip('/')}/agent-credential", auth=(quote_plus(client_id), quote_plus(secret))
        )
    except httpx.HTTPError as exc:
        raise PickupFailed(f"the broker at {broker_url} cannot be reached ({type(exc).__name__})") from None
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise PickupFailed(f"the broker answered {response.status_code}: {response.text[:200]}")
    return str(response.json()["client_secret"])


def write_secret_file(path: Path, secret: str) -> None:
    """Replace the secret file atomically, readable by its owner only (a reader never sees half a secret)."""
    temporary = path.with_name(f".{path.name}.new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secret)
    os.replace(temporary, path)
