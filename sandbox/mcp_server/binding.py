"""Sender-constrained tokens: a bound token is served only to the holder of the key it is bound to.

A token whose ``cnf`` names a DPoP key (``jkt``, RFC 9449) must come in an ``Authorization: DPoP`` header,
with one ``DPoP`` proof made for this request (``htm``, ``htu``), recently (``iat``), only once (``jti``),
for this token (``ath``), and signed by that key. The refusals, RFC 9449 §7.1:

- a bound token sent as a bearer token, or an unbound one sent as DPoP: 401 ``DPoP error="invalid_token"``;
- no proof, a malformed one, or one that fails any check above: 401 ``DPoP error="invalid_dpop_proof"``.

A token bound to a client certificate (``cnf.x5t#S256``, RFC 8705) is served only over a TLS connection whose
client certificate has that thumbprint; otherwise 401 ``Bearer error="invalid_token"`` (RFC 8705 §3).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry

from sandbox.agent.dpop import PROOF_TYPE, SCHEME, access_token_hash
from sandbox.mcp_server.principal import Principal

#: Asymmetric algorithms a proof may be signed with (never none, never a MAC).
PROOF_ALGORITHMS = ("ES256", "ES384", "RS256", "PS256", "EdDSA")
PROOF_MAX_AGE = 60  # seconds a proof is accepted after its iat
PROOF_LEEWAY = 5  # seconds of clock difference allowed either way
MAX_PROOF_LENGTH = 4096
SEEN_PROOFS = 100_000  # jti values remembered (each for the proof's lifetime) before the oldest are forgotten


class BindingRefused(Exception):
    """The token is bound and the request does not prove it is the holder's: a 401 with this challenge."""

    def __init__(self, scheme: str, error: str, description: str) -> None:
        self.scheme = scheme
        self.error = error
        self.description = description
        super().__init__(description)


@dataclass(frozen=True)
class Presented:
    """How a request carried its token: the scheme, the DPoP proofs and the TLS client certificate."""

    scheme: str  # "Bearer" or "DPoP"
    proofs: tuple[str, ...] = ()
    certificate_thumbprint: str | None = None  # x5t#S256 of the TLS client certificate, when there is one
    method: str = "POST"
    url: str = ""


def certificate_thumbprint(der: bytes) -> str:
    """``x5t#S256`` of a DER certificate (RFC 8705 §3.1)."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _same_target(htu: str, url: str) -> bool:
    """``htu`` names this request's URI: scheme and host case-insensitive, no query or fragment (RFC 9449 §4.3)."""
    try:
        first, second = urlsplit(htu), urlsplit(url)
    except ValueError:
        return False
    return (
        first.scheme.lower() == second.scheme.lower()
        and first.netloc.lower() == second.netloc.lower()
        and (first.path or "/") == (second.path or "/")
        and not first.query
        and not first.fragment
    )


class ReplayCache:
    """The ``jti`` of every proof seen while it could still be accepted: a proof is good once."""

    def __init__(self, clock: Callable[[], float], capacity: int = SEEN_PROOFS) -> None:
        self._clock = clock
        self._capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, jti: str, until: float) -> bool:
        now = self._clock()
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now or len(self._seen) >= self._capacity):
                self._seen.popitem(last=False)
            if jti in self._seen:
                return False
            self._seen[jti] = until
            return True


class BindingChecker:
    """Checks a verified principal's binding against how the request presented its token."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._replays = ReplayCache(clock)

    def check(self, principal: Principal, token: str, presented: Presented) -> None:
        binding = principal.binding
        if binding is not None and binding.x5t is not None and presented.certificate_thumbprint != binding.x5t:
            raise BindingRefused(
                "Bearer",
                "invalid_token",
                "the token is bound to a client certificate this connection did not present",
            )
        jkt = binding.jkt if binding is not None else None
        if jkt is None:
            if presented.scheme == SCHEME:
                raise BindingRefused(SCHEME, "invalid_token", "the token is not DPoP-bound; send it as a bearer token")
            return
        if presented.scheme != SCHEME:
            raise BindingRefused(SCHEME, "invalid_token", "the token is DPoP-bound; send it as DPoP with a proof")
        if len(presented.proofs) != 1:
            raise BindingRefused(
                SCHEME, "invalid_dpop_proof", "send exactly one DPoP proof" if presented.proofs else "no DPoP proof"
            )
        self._check_proof(presented.proofs[0], token, jkt, presented)

    def _check_proof(self, proof: str, token: str, jkt: str, presented: Presented) -> None:
        def refuse(description: str) -> BindingRefused:
            return BindingRefused(SCHEME, "invalid_dpop_proof", description)

        if len(proof) > MAX_PROOF_LENGTH:
            raise refuse("the DPoP proof is too long")
        try:
            header = jws.extract_compact(proof.encode()).headers()
        except (JoseError, ValueError, TypeError) as exc:
            raise refuse("the DPoP proof is not a well-formed JWT") from exc
        if header.get("typ") != PROOF_TYPE:
            raise refuse(f"the DPoP proof's typ is not {PROOF_TYPE}")
        alg = header.get("alg")
        if alg not in PROOF_ALGORITHMS:
            raise refuse(f"the DPoP proof's algorithm {alg!r} is not accepted")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("EC", "RSA", "OKP") or "d" in jwk:
            raise refuse("the DPoP proof carries no usable public key (jwk)")
        try:
            key = JWKRegistry.import_key(jwk)
            claims: dict[str, Any] = jwt.decode(proof, key, algorithms=[alg]).claims
        except (JoseError, ValueError, TypeError) as exc:
            raise refuse("the DPoP proof's signature does not verify") from exc
        if key.thumbprint() != jkt:
            raise refuse("the DPoP proof is signed by another key than the one the token is bound to")
        if claims.get("htm") != presented.method.upper():
            raise refuse("the DPoP proof was made for another HTTP method (htm)")
        htu = claims.get("htu")
        if not isinstance(htu, str) or not _same_target(htu, presented.url):
            raise refuse("the DPoP proof was made for another URL (htu)")
        issued_at = claims.get("iat")
        now = self._clock()
        if not isinstance(issued_at, int | float) or isinstance(issued_at, bool):
            raise refuse("the DPoP proof has no iat")
        if not now - PROOF_MAX_AGE - PROOF_LEEWAY <= issued_at <= now + PROOF_LEEWAY:
            raise refuse("the DPoP proof is not fresh (iat)")
        if claims.get("ath") != access_token_hash(token):
            raise refuse("the DPoP proof was made for another access token (ath)")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise refuse("the DPoP proof has no jti")
        if not self._replays.first_use(jti, issued_at + PROOF_MAX_AGE + PROOF_LEEWAY):
            raise refuse("the DPoP proof was used before (jti)")
