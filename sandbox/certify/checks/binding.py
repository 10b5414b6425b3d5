"""sender-constrained: a server that declares DPoP-bound tokens serves one only with its holder's proof."""

from __future__ import annotations

from typing import Any

from sandbox.agent.dpop import SCHEME, DPoPKey
from sandbox.agent.mcp_http import served
from sandbox.certify.checks.metadata import served_documents
from sandbox.certify.context import Context, check
from sandbox.certify.model import rfc


def declared(documents: list[dict[str, Any]]) -> tuple[bool, bool]:
    """(DPoP, mTLS): what the server's metadata says it supports (RFC 9728 §2)."""
    dpop = any(
        doc.get("dpop_bound_access_tokens_required") is True or bool(doc.get("dpop_signing_alg_values_supported"))
        for doc in documents
    )
    mtls = any(doc.get("tls_client_certificate_bound_access_tokens") is True for doc in documents)
    return dpop, mtls


@check(
    "sender-constrained",
    "MUST",
    "Serves a DPoP-bound token only with its holder's proof",
    "Examined where the metadata declares DPoP (dpop_signing_alg_values_supported, or "
    "dpop_bound_access_tokens_required). A token bound to certify's agent's key (cnf.jkt) is served with a proof "
    "made with that key for the request; the same token replayed as a bearer token, with the DPoP scheme and no "
    "proof, or with a proof made with another key, is answered 401.",
    rfc(9449, "7.1", "The DPoP Authentication Scheme"),
    rfc(9449, "4.3", "Checking DPoP Proofs"),
    rfc(9728, "2", "Protected Resource Metadata"),
)
def sender_constrained(ctx: Context) -> None:
    dpop, mtls = declared([document for _, document, _ in served_documents(ctx)])
    if not dpop:
        if mtls:
            ctx.skip(
                "the metadata declares only certificate-bound tokens (tls_client_certificate_bound_access_tokens), "
                "which certify does not examine yet"
            )
        ctx.skip("the metadata declares no sender-constrained tokens (dpop_signing_alg_values_supported)")
    unsupported = ctx.world.unsupported("dpop_binding")
    if unsupported:
        ctx.skip(f"{unsupported}: certify's agents there cannot hold a DPoP-bound token")
    agent = ctx.world.agent(ctx.manifest.scopes(), binding="dpop", label="DPoP holder")
    token = agent.token()
    assert agent.dpop is not None
    holder = ctx.opening(headers=agent.dpop.headers("POST", ctx.url, token))
    method = ctx.wire.opening_method
    ctx.control(f"{method} with the DPoP-bound token and its holder's proof is served", served(holder), holder)
    thief = DPoPKey.generate()
    cases = {
        "the bound token replayed as a bearer token, without a proof": ctx.opening(token),
        "the bound token with the DPoP scheme and no proof": ctx.opening(
            headers={"Authorization": f"{SCHEME} {token}"}
        ),
        "the bound token with a proof made with another key": ctx.opening(
            headers=thief.headers("POST", ctx.url, token)
        ),
    }
    for label, response in cases.items():
        ctx.expect(f"{label}: 401", response.status_code == 401, response)
