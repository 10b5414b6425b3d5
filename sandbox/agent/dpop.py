"""DPoP (RFC 9449): the agent's own key, and the proofs it signs with it.

A DPoP-bound agent holds a key pair that never leaves it. Every token request carries a proof (``htm``,
``htu``, ``iat``, ``jti``); the authorization server binds the token to the key's thumbprint (``cnf.jkt``).
Every request to a resource server then carries a new proof that also names the token (``ath``), and the
token goes in an ``Authorization: DPoP`` header, not as a bearer token. A token copied from the agent is
worth nothing without the private key.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import jwt
from joserfc.jwk import ECKey

PROOF_TYPE = "dpop+jwt"
ALGORITHM = "ES256"
SCHEME = "DPoP"


def access_token_hash(access_token: str) -> str:
    """``ath``: base64url of the SHA-256 of the token's ASCII (RFC 9449 §4.2)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def target_uri(url: str) -> str:
    """``htu``: the request's URI without query and fragment (RFC 9449 §4.2)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass(frozen=True)
class DPoPKey:
    """An agent's DPoP key (EC P-256, ES256): it signs proofs; its public JWK travels in each proof's header."""

    private_jwk: dict[str, Any] = field(repr=False)

    @classmethod
    def generate(cls) -> DPoPKey:
        return cls(ECKey.generate_key("P-256", private=True).as_dict(private=True))

    @property
    def public_jwk(self) -> dict[str, Any]:
        return {name: self.private_jwk[name] for name in ("kty", "crv", "x", "y")}

    @property
    def thumbprint(self) -> str:
        """The JWK SHA-256 thumbprint (RFC 7638): what a bound token's ``cnf.jkt`` names."""
        return ECKey.import_key(self.public_jwk).thumbprint()

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        now: float | None = None,
    ) -> str:
        """A fresh proof for one request: ``access_token`` given for a resource server (``ath``)."""
        claims: dict[str, Any] = {
            "jti": uuid.uuid4().hex,
            "htm": method.upper(),
            "htu": target_uri(url),
            "iat": int(time.time() if now is None else now),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": PROOF_TYPE, "alg": ALGORITHM, "jwk": self.public_jwk}
        return jwt.encode(header, claims, ECKey.import_key(self.private_jwk), algorithms=[ALGORITHM])

    def headers(self, method: str, url: str, access_token: str) -> dict[str, str]:
        """The two headers of a request to a resource server with a token bound to this key."""
        return {"Authorization": f"{SCHEME} {access_token}", SCHEME: self.proof(method, url, access_token=access_token)}
