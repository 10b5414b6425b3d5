"""The broker's admin authentication: a tenant admin's or the operator's token, verified with the keys its issuer
publishes (the shared signature checks), and refused in words when it is anything else."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from sandbox.broker.auth import Authenticator, AuthError
from sandbox.idp.realm import ADMIN_LOGIN_CLIENT_ID, TENANT_ADMIN_ROLE

BASE = "http://127.0.0.1:18080/realms"
MASTER, ACME = f"{BASE}/master", f"{BASE}/acme"
OPERATOR = "sandbox-admin"


class Realms:
    """The realms' OpenID configurations and JWKS, as an httpx transport; ``down`` makes every request fail."""

    def __init__(self) -> None:
        self.keys = {issuer: RSAKey.generate_key(2048, parameters={"kid": "k1"}) for issuer in (MASTER, ACME)}
        self.down = False
        self.asked: list[str] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        url = str(request.url)
        self.asked.append(url)
        issuer = url.split("/.well-known")[0].removesuffix("/certs")
        if url.endswith("/.well-known/openid-configuration"):
            return httpx.Response(
                200,
                json={
                    "issuer": issuer,
                    "token_endpoint": f"{issuer}/token",
                    "authorization_endpoint": f"{issuer}/auth",
                    "jwks_uri": f"{issuer}/certs",
                },
            )
        return httpx.Response(200, json={"keys": [self.keys[issuer].as_dict(private=False)]})


def token(key: RSAKey, issuer: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": issuer, "sub": "u-1", "iat": now, "exp": now + 300, **claims}
    return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": key.kid}, body, key)


def admin_claims(**extra: Any) -> dict[str, Any]:
    return {
        "azp": ADMIN_LOGIN_CLIENT_ID,
        "aud": [ADMIN_LOGIN_CLIENT_ID],
        "realm_access": {"roles": [TENANT_ADMIN_ROLE]},
        "preferred_username": "alice",
        **extra,
    }


@pytest.fixture
def realms() -> Realms:
    return Realms()


def authenticator(realms: Realms, refetch: float = 10.0) -> Authenticator:
    return Authenticator(
        master_issuer=MASTER,
        operator_client_id=OPERATOR,
        tenant_issuers=lambda: {ACME: "acme"},
        http=httpx.AsyncClient(transport=httpx.MockTransport(realms.answer)),
        jwks_refetch_interval=refetch,
    )


async def refused(auth: Authenticator, bearer: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await auth.authenticate(f"Bearer {bearer}")
    return caught.value


async def test_a_tenant_admin_with_otp_and_the_operator_are_recognised(realms: Realms) -> None:
    auth = authenticator(realms)
    admin = await auth.authenticate(f"Bearer {token(realms.keys[ACME], ACME, **admin_claims(amr=['pwd', 'otp']))}")
    assert (admin.kind, admin.tenant, admin.username, admin.mfa) == ("tenant_admin", "acme", "alice", True)
    operator = await auth.authenticate(f"Bearer {token(realms.keys[MASTER], MASTER, azp=OPERATOR)}")
    assert (operator.kind, operator.tenant, operator.is_operator) == ("operator", None, True)


async def test_tokens_that_are_not_an_admin_s_are_refused_with_the_reason(realms: Realms) -> None:
    auth = authenticator(realms)
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    cases = [
        ("not-a-jwt", 401, "not a JWT"),
        (token(realms.keys[ACME], "http://127.0.0.1:18080/realms/other", **admin_claims()), 401, "not a tenant"),
        (token(stranger, ACME, **admin_claims()), 401, "signature does not verify"),
        (token(realms.keys[MASTER], MASTER, azp="someone-else"), 403, "only from the operator"),
        (token(realms.keys[ACME], ACME, **admin_claims(azp="other-client")), 401, ADMIN_LOGIN_CLIENT_ID),
        (token(realms.keys[ACME], ACME, **admin_claims(realm_access={"roles": []})), 403, TENANT_ADMIN_ROLE),
        (token(realms.keys[ACME], ACME, **admin_claims(exp=int(time.time()) - 60)), 401, "expired"),
    ]
    for bearer, status, words in cases:
        error = await refused(auth, bearer)
        assert (error.status, words in error.description) == (status, True), (words, error.description)


async def test_a_header_no_access_token_carries_is_refused(realms: Realms) -> None:
    auth = authenticator(realms)
    key = realms.keys[ACME]
    now = int(time.time())
    forged = jwt.encode(
        {"alg": "RS256", "kid": "k1", "jku": "http://127.0.0.1:9/keys"},
        {"iss": ACME, "sub": "u-1", "iat": now, "exp": now + 60, **admin_claims()},
        key,
    )
    error = await refused(auth, forged)
    assert error.status == 401 and "processing" in error.description


async def test_keys_are_kept_while_the_idp_is_down_and_a_rotated_key_is_fetched(realms: Realms) -> None:
    auth = authenticator(realms, refetch=0.0)
    first = token(realms.keys[ACME], ACME, **admin_claims())
    await auth.authenticate(f"Bearer {first}")
    fetched = len(realms.asked)
    realms.down = True
    assert (await auth.authenticate(f"Bearer {first}")).tenant == "acme"  # no fetch: the kept keys verify it
    realms.down = False
    realms.keys[ACME] = RSAKey.generate_key(2048, parameters={"kid": "k2"})  # the realm rotated its key
    assert (await auth.authenticate(f"Bearer {token(realms.keys[ACME], ACME, **admin_claims())}")).tenant == "acme"
    assert len(realms.asked) == fetched + 1  # the JWKS once more, for the unknown kid


async def test_an_unreachable_idp_at_first_use_is_a_401_that_says_so(realms: Realms) -> None:
    realms.down = True
    error = await refused(authenticator(realms), token(realms.keys[ACME], ACME, **admin_claims()))
    assert error.status == 401 and "signing keys" in error.description
