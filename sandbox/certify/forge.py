"""Hostile tokens: what an attacker (or a careless client) sends a resource server.

Built from a real token's header and claims, so each differs from an acceptable token in the one way its
label says: a tampered payload, a flipped signature, ``alg: none``, HMAC keyed with the issuer's public key, a
key the issuer does not publish, or claims re-signed by a key the issuer *does* publish (:class:`Signer`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

Claims = dict[str, Any]


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def _decode(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def unverified(token: str) -> tuple[dict[str, Any], Claims] | None:
    """Header and claims of a compact JWS, NOT verified (evidence and forging only); None if not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, claims = _decode(parts[0]), _decode(parts[1])
    except (ValueError, UnicodeDecodeError):
        return None
    return (header, claims) if isinstance(header, dict) and isinstance(claims, dict) else None


def claims_of(token: str) -> Claims:
    """The token's claims, NOT verified; empty when it is not a JWS."""
    parts = unverified(token)
    return parts[1] if parts is not None else {}


def changed(claims: Claims, **changes: Any) -> Claims:
    """``claims`` with ``changes`` applied; a change to None removes the claim."""
    updated = {**claims, **changes}
    return {name: value for name, value in updated.items() if value is not None}


def fresh_times(claims: Claims, lifetime: int = 300, now: int | None = None) -> Claims:
    """The claims made current: issued now, valid for ``lifetime`` s, a new ``jti``."""
    now = int(time.time()) if now is None else now
    return changed(claims, iat=now, exp=now + lifetime, nbf=None, jti=str(uuid.uuid4()))


@dataclass
class Signer:
    """An RSA key certify holds, and the ``kid`` it goes by (a realm's, once the realm publishes it)."""

    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, private=True))
    kid: str = field(default_factory=lambda: f"certify-{uuid.uuid4().hex[:12]}")

    def private_pem(self) -> str:
        return self.key.as_pem(private=True).decode()

    def sign(self, claims: Claims, *, kid: str | None = None) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": kid or self.kid}
        return jwt.encode(header, claims, self.key)


def tampered(token: str, claims: Claims) -> str:
    """The token's header and signature around other claims (a payload the signature does not cover)."""
    header, _, signature = token.split(".")
    return f"{header}.{b64json(claims)}.{signature}"


def _signature_bytes(token: str) -> tuple[str, bytes]:
    head, signature = token.rsplit(".", 1)
    return head, base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))


def flipped_signature(token: str) -> str:
    head, signature = _signature_bytes(token)
    raw = bytearray(signature)
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{b64url(bytes(raw))}"


def shortened_signature(token: str) -> str:
    """The token with the last bytes of its signature dropped, still well-formed base64url.

    Cutting characters off the encoded signature instead would leave stray bits that a strict
    decoder refuses most of the time, so a server that never checks signatures would pass by chance.
    """
    head, signature = _signature_bytes(token)
    return f"{head}.{b64url(signature[: len(signature) * 3 // 4])}"


def unsigned(claims: Claims, *, alg: str = "none", signature: str = "") -> str:
    """``alg: none`` (or a case variant): no signature, or one left over from a real token."""
    return f"{b64json({'alg': alg, 'typ': 'JWT'})}.{b64json(claims)}.{signature}"


def hmac_signed(claims: Claims, secret: bytes, *, kid: str | None) -> str:
    """HS256 keyed with ``secret``: the key-confusion attack when ``secret`` is the issuer's public key."""
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def public_key_secrets(public_jwk: dict[str, Any]) -> dict[str, bytes]:
    """The forms of an RSA public key an HMAC-confused verifier might use as its secret."""
    key = RSAKey.import_key(public_jwk)
    return {
        "the PEM public key": key.as_pem(private=False),
        "the JWK as JSON": json.dumps(public_jwk).encode(),
        "the modulus": base64.urlsafe_b64decode(public_jwk["n"] + "=" * (-len(public_jwk["n"]) % 4)),
    }


def malformed(token: str) -> dict[str, str]:
    """Tokens no verifier can even parse, by label: garbage, truncations, wrong structure."""
    header, payload, signature = token.split(".")
    return {
        "garbage": "not-a-token",
        "three parts of nonsense": "a.b.c",
        "cut in the middle of its payload": f"{header}.{payload[: len(payload) // 2]}",
        "header and payload only": f"{header}.{payload}",
        "a fourth part": f"{token}.{signature[:8]}",
        "a payload that is not JSON": f"{header}.{b64url(b'not json at all')}.{signature}",
        "characters outside base64url": f"{header}.{payload[:-4]}%%%%.{signature}",
        "4 KiB of base64": "Zm9v" * 1024,
    }
