"""No issued secret, private key or full token ends up in a log file or in the broker's database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from sandbox.agent.tokens import PrivateKeyCredential
from sandbox.broker.store import broker_dir

from .conftest import Broker
from .test_lifecycle import public, refused, rsa_key, secret_credential, token_for


@pytest.mark.reliability(
    "Secret hygiene",
    "Every kind of credential issued once (passwords, OTP seeds, admin tokens, secrets, keys, rotations, "
    "revocation with verify_token), then logs and the broker database searched",
    "none found",
)
def test_logs_and_database_hold_no_issued_secret(broker: Broker, tmp_path: Path, reliability: Any) -> None:
    tenant = broker.new_tenant("hyg")
    issued: list[str] = []
    for admin in tenant.admins.values():
        issued += [admin.password, *([admin.otp_secret] if admin.otp_secret else [])]
    alice, bob = tenant.admins["alice"].token(), tenant.admins["bob"].token()
    issued += [alice, bob]

    with_secret = broker.provision(tenant, alice, role="invoice-writer")
    issued.append(with_secret["credential"]["client_secret"])
    key, next_key = rsa_key("hyg-1"), rsa_key("hyg-2")
    with_key = broker.provision(tenant, alice, role="log-reader", credential_type="private_key_jwt", jwk=public(key))
    issued += [RSAKey.import_key(k.as_dict(private=True)).as_dict(private=True)["d"] for k in (key, next_key)]
    pending = broker.provision(tenant, alice, role="production-deployer", environment="production")
    issued.append(pending["credential"]["client_secret"])
    broker.call("POST", f"/tenants/{tenant.name}/agents/{pending['agent']['id']}/approve", bob, {})

    rotated = broker.call(
        "POST", f"/tenants/{tenant.name}/agents/{with_secret['agent']['id']}/rotate", alice, {"grace_seconds": 60}
    ).json()
    new_secret = rotated["credential"]["client_secret"]
    issued.append(new_secret)
    broker.call(
        "POST",
        f"/tenants/{tenant.name}/agents/{with_key['agent']['id']}/rotate",
        alice,
        {"grace_seconds": 60, "jwk": public(next_key)},
    )
    tokens = [
        token_for(tenant, secret_credential(with_secret, new_secret)).access_token,
        token_for(tenant, secret_credential(pending)).access_token,
        token_for(
            tenant, PrivateKeyCredential(with_key["credential"]["client_id"], next_key.as_dict(private=True))
        ).access_token,
    ]
    issued += tokens
    refused(tenant, secret_credential(with_secret, "a-wrong-secret-that-is-logged-nowhere"))
    broker.call("POST", f"/tenants/{tenant.name}/agents/{with_secret['agent']['id']}/mcp-config", alice, {})
    for agent, token in ((with_secret, tokens[0]), (with_key, tokens[2])):
        revoked = broker.call("POST", f"/revoke/{agent['agent']['id']}", bob, {"reason": "done", "verify_token": token})
        assert revoked.status_code == 200

    signing_key = json.loads(broker.settings.signing_key_file.read_text())
    assert broker.settings.signing_key_file.stat().st_mode & 0o777 == 0o600
    issued.append(signing_key["d"])

    places = [p for p in broker.settings.log_dir.glob("*") if p.is_file()]
    places += [p for p in broker_dir(broker.settings).glob("broker.db*") if p.is_file()]
    assert any(p.name == "broker.log" for p in places) and any(p.name == "broker.db" for p in places)
    found = []
    for place in places:
        content = place.read_bytes()
        found += [f"{place.name}: {secret[:6]}…" for secret in issued if secret and secret.encode() in content]
    assert found == []
    reliability.add()
