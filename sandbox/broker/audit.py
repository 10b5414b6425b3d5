"""The audit log: one entry per transition or admin act, append-only, hash-chained per tenant.

Each entry's hash is SHA-256 over its predecessor's hash and its own fields in canonical JSON, so
changing, removing or reordering an entry breaks the chain from that entry on; each tenant's head record
names its newest entry, so removing entries from the end is found too. ``verify`` finds all of it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from sandbox.broker.schemas import AuditEntryOut
from sandbox.broker.store import AuditEntry, AuditHead

GENESIS = "0" * 64
PLATFORM = "_platform"  # the "tenant" of acts that belong to no tenant (tenant creation, server registration)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256(f"{prev_hash}\n{canonical(fields)}".encode()).hexdigest()


def _fields(entry: AuditEntry) -> dict[str, Any]:
    """What the hash covers; the order is covered by the link to the predecessor."""
    return {
        "tenant": entry.tenant,
        "agent_id": entry.agent_id,
        "actor": entry.actor,
        "action": entry.action,
        "before": entry.before,
        "after": entry.after,
        "reason": entry.reason,
        "at": entry.at,
    }


def record(
    session: Session,
    *,
    tenant: str,
    actor: str,
    action: str,
    at: datetime,
    agent_id: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
) -> AuditEntry:
    """Append one entry in the caller's transaction, so the act and its record commit together.

    The tenant's head row is locked first (PostgreSQL; SQLite has one writer at a time anyway), so two broker
    processes appending to one chain take turns instead of both linking to the same predecessor.
    """
    head = _locked_head(session, tenant)
    previous = head.hash
    entry = AuditEntry(
        tenant=tenant,
        agent_id=agent_id,
        actor=actor,
        action=action,
        before=canonical(before or {}),
        after=canonical(after or {}),
        reason=reason,
        at=at.isoformat(),
        prev_hash=previous,
        hash="",
    )
    entry.hash = entry_hash(previous, _fields(entry))
    session.add(entry)
    session.flush()
    head.seq, head.hash = entry.seq, entry.hash
    return entry


def _locked_head(session: Session, tenant: str) -> AuditHead:
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}.get(dialect)
    if insert is not None:  # the first entry of a tenant: make its head row, unless another writer just did
        session.execute(insert(AuditHead).values(tenant=tenant, seq=0, hash=GENESIS).on_conflict_do_nothing())
    elif session.get(AuditHead, tenant) is None:
        session.add(AuditHead(tenant=tenant, seq=0, hash=GENESIS))
        session.flush()
    statement = select(AuditHead).where(AuditHead.tenant == tenant).with_for_update()
    return session.execute(statement.execution_options(populate_existing=True)).scalar_one()


def public(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        seq=entry.seq,
        **{**_fields(entry), "before": json.loads(entry.before), "after": json.loads(entry.after)},
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


def entries(session: Session, tenant: str, agent_id: str | None = None, limit: int = 1000) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.tenant == tenant)
    if agent_id is not None:
        query = query.where(AuditEntry.agent_id == agent_id)
    return list(session.scalars(query.order_by(AuditEntry.seq).limit(limit)))


@dataclass
class Verification:
    entries: int = 0
    tenants: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session, tenant: str | None = None) -> Verification:
    """Recompute every tenant's chain (or one tenant's); report each entry whose hash or link does not hold."""
    report = Verification()
    last_hash: dict[str, str] = {}
    last_seq: dict[str, int] = {}
    entries_query = select(AuditEntry).order_by(AuditEntry.seq)
    heads_query = select(AuditHead)
    if tenant is not None:
        entries_query = entries_query.where(AuditEntry.tenant == tenant)
        heads_query = heads_query.where(AuditHead.tenant == tenant)
    for entry in session.scalars(entries_query):
        report.entries += 1
        expected_previous = last_hash.get(entry.tenant, GENESIS)
        if entry.prev_hash != expected_previous:
            report.problems.append(
                f"entry {entry.seq} (tenant {entry.tenant}): its link does not match the entry before it "
                "(an entry was removed, inserted or reordered)"
            )
        elif entry.hash != entry_hash(entry.prev_hash, _fields(entry)):
            report.problems.append(f"entry {entry.seq} (tenant {entry.tenant}): its content does not match its hash")
        last_hash[entry.tenant] = entry.hash
        last_seq[entry.tenant] = entry.seq
    heads = {head.tenant: head for head in session.scalars(heads_query)}
    for name in sorted(set(heads) | set(last_hash)):
        head = heads.get(name)
        if head is None:
            report.problems.append(f"tenant {name}: its chain has no head (the head record was removed)")
        elif head.hash != last_hash.get(name, GENESIS):
            report.problems.append(
                f"tenant {name}: the chain ends at entry {last_seq.get(name, 0)}, but its head is entry "
                f"{head.seq} (entries were removed from the end, or the head was changed)"
            )
    report.tenants = len(last_hash)
    return report
