"""The checks, one per row of docs/mcp-auth-requirements.md, in the tables' order (each runs on the revisions
whose table has its row)."""

from __future__ import annotations

from sandbox.certify.checks.binding import sender_constrained
from sandbox.certify.checks.challenges import insufficient_scope, no_token, scope_hint, www_authenticate
from sandbox.certify.checks.keys import jwks_rollover
from sandbox.certify.checks.lifecycle import revocation, tenant
from sandbox.certify.checks.metadata import prm_content, prm_served
from sandbox.certify.checks.passthrough import no_passthrough
from sandbox.certify.checks.positive import positive
from sandbox.certify.checks.request_state import request_state
from sandbox.certify.checks.scopes import tool_scope
from sandbox.certify.checks.sessions import session_binding
from sandbox.certify.checks.stateless import header_body_match, private_cache, stateless_auth
from sandbox.certify.checks.step_up import no_offline_access, single_challenge
from sandbox.certify.checks.tokens import audience, expired, invalid, issuer, no_query_token, signature
from sandbox.certify.context import Check
from sandbox.certify.revision import Revision

CHECKS: list[Check] = [
    prm_served,
    prm_content,
    no_token,
    www_authenticate,
    scope_hint,
    invalid,
    expired,
    audience,
    issuer,
    signature,
    no_query_token,
    insufficient_scope,
    tool_scope,
    session_binding,
    no_passthrough,
    revocation,
    tenant,
    positive,
    jwks_rollover,
    stateless_auth,
    header_body_match,
    private_cache,
    request_state,
    single_challenge,
    no_offline_access,
    sender_constrained,
]
#: Run before the others (every control repeats it) and after them (it judges the whole run's upstream traffic).
RUN_FIRST = ("positive",)
RUN_LAST = ("no-passthrough",)
#: Run beside the others, each in a thread of its own, from right after the first: most of their time is a wait
#: the server under test sets (its key cache, its requestState lifetime, its revocation delay).
RUN_ALONGSIDE = ("jwks-rollover", "request-state", "revocation")
CHECK_IDS = [c.spec.id for c in CHECKS]


def checks_for(revision: Revision) -> list[Check]:
    """The checks a revision's table has a row for, in order."""
    return [c for c in CHECKS if revision in c.spec.revisions]


def run_order(checks: list[Check]) -> list[Check]:
    first = [c for c in checks if c.spec.id in RUN_FIRST]
    last = [c for c in checks if c.spec.id in RUN_LAST]
    return first + [c for c in checks if c not in first and c not in last] + last


def run_stages(checks: list[Check]) -> tuple[list[Check], list[Check], list[Check], list[Check]]:
    """The checks by when they run: first, alongside (each in its own thread), the others in turn, last."""
    ordered = run_order(checks)
    first = [c for c in ordered if c.spec.id in RUN_FIRST]
    last = [c for c in ordered if c.spec.id in RUN_LAST]
    alongside = [c for c in ordered if c.spec.id in RUN_ALONGSIDE]
    return first, alongside, [c for c in ordered if c not in (*first, *alongside, *last)], last
