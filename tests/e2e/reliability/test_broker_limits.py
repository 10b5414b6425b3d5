"""Oversize requests at the broker: bodies, header blocks, and an enormous header, each refused; a control after."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from broker.conftest import Broker, Tenant


@pytest.mark.reliability(
    "Hostile input",
    "Oversize requests at the broker: 2 MiB body (declared and streamed), 20 KiB and 1 MiB header blocks",
    "413 / 431 / connection refused by the parser, never served; a normal request after is served",
)
def test_the_broker_refuses_oversize_requests(broker: Broker, tenant: Tenant, reliability: Any) -> None:
    alice = tenant.admins["alice"].token()
    url = f"{broker.url}/tenants/{tenant.name}/agents"
    headers = {"Authorization": f"Bearer {alice}", "Content-Type": "application/json"}
    huge = b'{"name":"big","owner":"' + b"o" * (2 * 1024 * 1024) + b'","role":"log-reader","environment":"staging"}'
    assert httpx.post(url, content=huge, headers=headers, timeout=60).status_code == 413
    reliability.add()

    def streamed() -> Any:
        yield huge[: len(huge) // 2]
        yield huge[len(huge) // 2 :]

    assert httpx.post(url, content=streamed(), headers=headers, timeout=60).status_code == 413
    reliability.add()
    assert httpx.get(url, headers={**headers, "X-Padding": "p" * 20_000}, timeout=60).status_code == 431
    reliability.add()
    try:
        enormous = httpx.get(url, headers={**headers, "X-Padding": "p" * 1_000_000}, timeout=60)
        assert 400 <= enormous.status_code < 500
    except httpx.HTTPError:
        pass  # the HTTP parser may drop such a connection outright; either way it is not served
    reliability.add()
    assert httpx.get(url, headers=headers, timeout=60).status_code == 200  # control
    assert not [a for a in httpx.get(url, headers=headers).json() if a["name"] == "big"]
