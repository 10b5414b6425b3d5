"""The audit log: chained per tenant, and any change, removal or reordering is detected."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from sandbox.broker import audit
from sandbox.broker.store import Database, StorageError

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'audit.db'}")
    database.create_schema()
    with database.session() as session:
        for tenant in ("acme", "globex", "acme", "acme"):
            audit.record(session, tenant=tenant, actor="alice", action="agent.provisioned", at=AT, after={"n": 1})
    return database


def problems(db: Database) -> list[str]:
    with db.session() as session:
        return audit.verify(session).problems


def raw(db: Database, *statements: str) -> None:
    """Change the table behind the broker's back, as someone with the database file could."""
    with db.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER audit_no_update"))
        connection.execute(text("DROP TRIGGER audit_no_delete"))
        for statement in statements:
            connection.execute(text(statement))


def test_intact_log_verifies_with_one_chain_per_tenant(db: Database) -> None:
    with db.session() as session:
        report = audit.verify(session)
        acme = audit.entries(session, "acme")
    assert report.ok and report.entries == 4 and report.tenants == 2
    assert acme[0].prev_hash == audit.GENESIS and acme[1].prev_hash == acme[0].hash


def test_changed_content_is_detected(db: Database) -> None:
    raw(db, "UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    assert problems(db) == ["entry 3 (tenant acme): its content does not match its hash"]


def test_removed_entry_is_detected(db: Database) -> None:
    raw(db, "DELETE FROM audit WHERE seq = 3")
    assert problems(db) == [
        "entry 4 (tenant acme): its link does not match the entry before it "
        "(an entry was removed, inserted or reordered)"
    ]


def test_recomputed_hash_still_breaks_the_next_link(db: Database) -> None:
    with db.session() as session:
        entry = audit.entries(session, "acme")[1]
        forged = audit.entry_hash(entry.prev_hash, {**audit._fields(entry), "actor": "mallory"})
    raw(db, f"UPDATE audit SET actor = 'mallory', hash = '{forged}' WHERE seq = {entry.seq}")
    assert len(problems(db)) == 1 and "link" in problems(db)[0]


def test_the_table_is_append_only(db: Database) -> None:
    with pytest.raises(StorageError), db.session() as session:
        session.execute(text("UPDATE audit SET reason = 'x'"))
    with pytest.raises(StorageError), db.session() as session:
        session.execute(text("DELETE FROM audit"))
    assert problems(db) == []


@pytest.mark.reliability(
    "Secret hygiene",
    "Audit entry edited or removed, each entry in turn, newest included (unit)",
    "every change named by `audit verify`",
)
def test_changing_or_removing_any_entry_is_detected(tmp_path: Path, reliability: Any) -> None:
    for seq in (1, 2, 3, 4):
        for statement in (
            f"UPDATE audit SET reason = 'hidden' WHERE seq = {seq}",
            f"DELETE FROM audit WHERE seq = {seq}",
        ):
            database = Database(f"sqlite:///{tmp_path / f'{seq}-{len(statement)}.db'}")
            database.create_schema()
            with database.session() as session:
                for tenant in ("acme", "globex", "acme", "acme"):
                    audit.record(session, tenant=tenant, actor="alice", action="agent.provisioned", at=AT)
            assert problems(database) == []
            raw(database, statement)
            assert problems(database), statement
            database.dispose()
            reliability.add()


def test_removing_the_newest_entry_is_named_against_the_chain_head(db: Database) -> None:
    raw(db, "DELETE FROM audit WHERE seq = 4")
    assert problems(db) == [
        "tenant acme: the chain ends at entry 3, but its head is entry 4 "
        "(entries were removed from the end, or the head was changed)"
    ]


def test_removing_a_chain_head_is_detected(db: Database) -> None:
    raw(db, "DELETE FROM audit_heads WHERE tenant = 'globex'")
    assert problems(db) == ["tenant globex: its chain has no head (the head record was removed)"]


def test_one_tenants_chain_verifies_alone(db: Database) -> None:
    raw(db, "UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    with db.session() as session:
        globex, acme = audit.verify(session, "globex"), audit.verify(session, "acme")
    assert globex.ok and (globex.entries, globex.tenants) == (1, 1)
    assert acme.problems == ["entry 3 (tenant acme): its content does not match its hash"] and acme.entries == 3


def test_audit_verify_command_by_tenant_and_as_json(
    db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.cli import app
    from sandbox.cli_errors import run_command_line

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    assert run_command_line(app, ["audit", "verify", "--database-url", url, "-t", "globex", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "entries": 1, "chains": 1, "problems": []}
    assert run_command_line(app, ["audit", "verify", "--database-url", url, "-t", "nosuch"]) == 1
    assert capsys.readouterr().err.startswith("error: no audit entries of tenant nosuch")
    raw(db, "UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    assert run_command_line(app, ["audit", "verify", "--database-url", url, "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["problems"] == ["entry 3 (tenant acme): its content does not match its hash"]
    assert captured.err.splitlines()[-1].startswith("error: the audit log was tampered with")
