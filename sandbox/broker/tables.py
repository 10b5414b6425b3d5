"""The columns ``-o table`` shows for each kind of thing the broker lists (JSON shows every field)."""

from __future__ import annotations

from typing import Any

from sandbox.cli_output import Column

TENANTS = [Column("tenant", "tenant"), Column("issuer", "issuer"), Column("created", "created_at")]

AGENTS = [
    Column("id", "id"),
    Column("name", "name"),
    Column("role", "role"),
    Column("environment", "environment"),
    Column("status", "status"),
    Column("mode", "mode"),
    Column("credential", "credential_type"),
    Column("created", "created_at"),
]

REVIEW_QUEUE = [
    Column("id", "id"),
    Column("name", "name"),
    Column("role", "role"),
    Column("status", "status"),
    Column("why", lambda row: (row.get("review") or {}).get("reason") or "-"),
    Column("risk tier", lambda row: (row.get("review") or {}).get("risk_tier") or "-"),
    Column("due", lambda row: (row.get("review") or {}).get("due_at") or "-"),
]

SERVERS = [Column("url (audience)", "url"), Column("revocation events", lambda row: row.get("events_url") or "-")]

AUDIT = [
    Column("seq", "seq"),
    Column("at", "at"),
    Column("actor", "actor"),
    Column("action", "action"),
    Column("agent", "agent_id"),
    Column("reason", "reason"),
]


def _environments(row: dict[str, Any]) -> str:
    return "; ".join(f"{name}: {', '.join(scopes)}" for name, scopes in row["environments"].items())


ROLES = [
    Column("role", "role"),
    Column("scopes by environment", _environments),
    Column("max token s", "max_token_lifetime"),
    Column("approval in", "approval_required"),
    Column("dormant after days", "dormancy_days"),
    Column("risk tier", lambda row: row.get("risk_tier") or "-"),
    Column("max credential age days", lambda row: row.get("max_credential_age_days") or "-"),
]


def role_rows(roles: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": name, **spec} for name, spec in roles.items()]
