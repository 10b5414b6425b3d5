"""A broker database made before a column was renamed opens with the new name and its rows' values kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sandbox.broker.store import Agent, Database


def insert(connection: sqlite3.Connection, table: str, **given: object) -> None:
    """A row with ``given`` values and a plausible one for every other required column."""
    values = dict(given)
    for _, name, kind, required, default, _ in connection.execute(f"PRAGMA table_info({table})"):
        if name in values or not required or default is not None:
            continue
        kind = kind.upper()
        values[name] = 0 if kind in ("INTEGER", "FLOAT", "BOOLEAN") else "[]" if kind == "JSON" else "2026-01-01"
    marks = ", ".join("?" for _ in values)
    connection.execute(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({marks})", list(values.values()))


def test_an_agents_table_with_the_old_idp_column_is_renamed_in_place(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    fresh = Database(f"sqlite:///{path}")
    fresh.create_schema()
    fresh.dispose()
    with sqlite3.connect(path) as old:  # as a broker before the rename left it
        old.execute("ALTER TABLE agents RENAME COLUMN idp_id TO keycloak_id")
        insert(old, "tenants", name="acme")
        insert(old, "agents", id="a1", tenant="acme", keycloak_id="internal-1")
    database = Database(f"sqlite:///{path}")
    database.create_schema()
    with database.session() as session:
        agent = session.get(Agent, "a1")
        assert agent is not None and agent.idp_id == "internal-1"
    database.create_schema()  # again: nothing left to rename
    database.dispose()
