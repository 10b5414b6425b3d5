"""Agent credentials as the broker keeps them: fingerprints and public keys, never secrets or private keys."""

from __future__ import annotations

import hashlib
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from sandbox.broker.errors import BadRequest

_KEY_TYPES = {"RSA": (RSAKey, "RS256"), "EC": (ECKey, "ES256"), "OKP": (OKPKey, "EdDSA")}
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def secret_fingerprint(secret: str) -> str:
    """A short, non-reversible name for a high-entropy secret (for audit and rotation records)."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def public_jwk(jwk: Any) -> dict[str, Any]:
    """The agent's public JWK, checked and completed with ``kid`` and ``alg``; refuses private keys and junk."""
    fix = "send the agent's public key as a JWK object (kty RSA, EC or OKP), without private members"
    if not isinstance(jwk, dict):
        raise BadRequest("the jwk is not a JSON object", fix)
    if _PRIVATE_MEMBERS & set(jwk):
        raise BadRequest("the jwk contains private key material; the broker only takes public keys", fix)
    kind = _KEY_TYPES.get(str(jwk.get("kty")))
    if kind is None:
        raise BadRequest(f"the jwk has unsupported kty {jwk.get('kty')!r}", fix)
    key_class, algorithm = kind
    try:
        key = key_class.import_key(jwk)
        if key.is_private:
            raise BadRequest("the jwk contains private key material; the broker only takes public keys", fix)
        thumbprint = key.thumbprint()
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise BadRequest(f"the jwk is not a valid {jwk.get('kty')} public key ({type(exc).__name__})", fix) from None
    completed = key.as_dict(private=False)
    completed["kid"] = str(jwk.get("kid") or thumbprint)
    completed["alg"] = str(jwk.get("alg") or algorithm)
    completed["use"] = "sig"
    return completed


def key_fingerprint(jwk: dict[str, Any]) -> str:
    key_class, _ = _KEY_TYPES[jwk["kty"]]
    return "jwk-thumbprint:" + key_class.import_key(jwk).thumbprint()
