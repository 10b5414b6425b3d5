"""How an agent proves who it is at a token endpoint (RFC 6749 §2.3, RFC 7523 ``private_key_jwt``).

The method is chosen from what the authorization server says it supports (its metadata's
``token_endpoint_auth_methods_supported``) and the kind of credential the agent holds: a secret goes by
``client_secret_basic`` when offered (the default of RFC 8414 when the server says nothing), else by
``client_secret_post``; a private key signs an assertion whose ``aud`` is the authorization server's issuer
(RFC 7523bis, and the MCP client-credentials extension).
"""

from __future__ import annotations

import base64
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

from sandbox.errors import SandboxError

CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_SECRET_POST = "client_secret_post"
PRIVATE_KEY_JWT = "private_key_jwt"
SECRET_METHODS = (CLIENT_SECRET_BASIC, CLIENT_SECRET_POST)  # in the order they are preferred
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 60  # seconds

#: The signing algorithm for each kind of key, when the JWK does not name one.
_DEFAULT_ALGORITHMS = {
    ("RSA", None): "RS256",
    ("EC", "P-256"): "ES256",
    ("EC", "P-384"): "ES384",
    ("OKP", "Ed25519"): "EdDSA",
}


@dataclass(frozen=True)
class ClientSecretCredential:
    client_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class PrivateKeyCredential:
    """A private key as a JWK (RSA, EC P-256/P-384 or Ed25519); its public half is registered with the server."""

    client_id: str
    private_jwk: dict[str, Any] = field(repr=False)

    @classmethod
    def from_pem(cls, client_id: str, pem: str | bytes) -> PrivateKeyCredential:
        """A credential from a PKCS#8 (or traditional) PEM private key."""
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SandboxError(
                f"the private key is not a readable PEM key ({exc})", "give an unencrypted PEM"
            ) from None
        kinds: dict[type, Any] = {
            rsa.RSAPrivateKey: RSAKey,
            ec.EllipticCurvePrivateKey: ECKey,
            ed25519.Ed25519PrivateKey: OKPKey,
        }
        imported = next((kind.import_key(data) for base, kind in kinds.items() if isinstance(key, base)), None)
        if imported is None:
            raise SandboxError(f"a {type(key).__name__} cannot sign assertions", "use an RSA, EC P-256 or Ed25519 key")
        return cls(client_id, imported.as_dict(private=True))

    @property
    def kid(self) -> str | None:
        kid = self.private_jwk.get("kid")
        return str(kid) if kid else None

    @property
    def alg(self) -> str:
        named = self.private_jwk.get("alg")
        if named:
            return str(named)
        kind = (self.private_jwk.get("kty"), self.private_jwk.get("crv"))
        alg = _DEFAULT_ALGORITHMS.get(kind)
        if alg is None:
            raise SandboxError(f"no signing algorithm for a {kind[0]} {kind[1] or ''} key", "set the JWK's alg")
        return alg


Credential = ClientSecretCredential | PrivateKeyCredential


class NoCommonMethod(SandboxError):
    """The server supports no method this credential can use."""


def choose_method(credential: Credential, supported: Sequence[str] | None) -> str:
    """The method to authenticate ``credential`` with, given the server's supported methods (None: not said)."""
    if isinstance(credential, PrivateKeyCredential):
        if supported is None or PRIVATE_KEY_JWT in supported:
            return PRIVATE_KEY_JWT
        wanted: Sequence[str] = (PRIVATE_KEY_JWT,)
    else:
        offered = SECRET_METHODS[:1] if supported is None else supported  # RFC 8414 §2: basic when not said
        chosen = next((method for method in SECRET_METHODS if method in offered), None)
        if chosen is not None:
            return chosen
        wanted = SECRET_METHODS
    raise NoCommonMethod(
        f"the token endpoint supports {', '.join(supported or ()) or 'no client authentication'}, "
        f"and this credential needs {' or '.join(wanted)}",
        "use a credential of a kind the authorization server accepts",
    )


@dataclass(frozen=True)
class ClientAuthentication:
    """What a token request carries to authenticate the client: headers and form fields."""

    method: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    form: dict[str, str] = field(default_factory=dict, repr=False)


def authenticate(credential: Credential, method: str, issuer: str) -> ClientAuthentication:
    """The headers and form fields for one token request (a new assertion each time for a key)."""
    if isinstance(credential, PrivateKeyCredential):
        return ClientAuthentication(
            method,
            form={
                "client_id": credential.client_id,
                "client_assertion_type": JWT_BEARER_ASSERTION,
                "client_assertion": assertion(credential, issuer),
            },
        )
    if method == CLIENT_SECRET_BASIC:
        # RFC 6749 §2.3.1: each part form-urlencoded, then joined by ':' and Base64-encoded.
        pair = f"{quote(credential.client_id, safe='')}:{quote(credential.secret, safe='')}"
        return ClientAuthentication(
            method, headers={"Authorization": f"Basic {base64.b64encode(pair.encode()).decode()}"}
        )
    return ClientAuthentication(method, form={"client_id": credential.client_id, "client_secret": credential.secret})


def assertion(credential: PrivateKeyCredential, audience: str, *, now: float | None = None) -> str:
    """A signed client assertion (RFC 7523 §3): ``iss`` = ``sub`` = the client id, ``aud`` = the issuer."""
    issued_at = int(time.time() if now is None else now)
    claims = {
        "iss": credential.client_id,
        "sub": credential.client_id,
        "aud": audience,
        "jti": uuid.uuid4().hex,
        "iat": issued_at,
        "exp": issued_at + ASSERTION_LIFETIME,
    }
    header = {"alg": credential.alg, "typ": "JWT"}
    if credential.kid:
        header["kid"] = credential.kid
    key = JWKRegistry.import_key(credential.private_jwk)
    with warnings.catch_warnings():  # RFC 9864 prefers "Ed25519" to "EdDSA"; the IdP takes "EdDSA"
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(header, claims, key, algorithms=[credential.alg])
