"""The stack broker's real audit log, tampered with on a copy of its database as someone holding the file could:
every entry of a tenant's chain edited, and deleted, one at a time; `mcp-sandbox audit verify` names each.

The intact copy and the first tampered one are verified by the command in a process of its own, as an operator
runs it; the other copies by the same command in-process (a process each, on a busy machine, took minutes)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from broker.conftest import Broker, Tenant
from typer.testing import CliRunner

from sandbox.broker.store import broker_dir
from sandbox.cli import app

from .conftest import audit_verify


def copy_of_the_stack_database(broker: Broker, target: Path) -> str:
    """A consistent copy of the running broker's SQLite database (its WAL included)."""
    source = sqlite3.connect(broker_dir(broker.settings) / "broker.db")
    copy = sqlite3.connect(target)
    with copy:
        source.backup(copy)
    source.close()
    copy.close()
    return f"sqlite:///{target}"


def tamper(database: Path, statement: str) -> None:
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TRIGGER audit_no_update")
        connection.execute("DROP TRIGGER audit_no_delete")
        connection.execute(statement)


@pytest.mark.reliability(
    "Secret hygiene",
    "The stack's audit log: each entry of a tenant's chain edited, and deleted, on a copy of the database",
    "`mcp-sandbox audit verify` exits 1 naming the entry every time; the untouched copy verifies",
)
def test_editing_or_deleting_any_audit_entry_is_detected(
    broker: Broker, tenant: Tenant, tmp_path: Path, reliability: Any
) -> None:
    alice = tenant.admins["alice"].token()
    agent = broker.provision(tenant, alice, role="invoice-writer")["agent"]
    broker.call("POST", f"/tenants/{tenant.name}/agents/{agent['id']}/rotate", alice, {"grace_seconds": 0})
    broker.call("POST", f"/revoke/{agent['id']}", alice, {"reason": "done"})
    chain = [e["seq"] for e in broker.call("GET", f"/tenants/{tenant.name}/audit", alice).json()]
    assert len(chain) >= 4  # tenant created, provisioned, rotated, revoked

    intact = audit_verify(broker.settings, copy_of_the_stack_database(broker, tmp_path / "intact.db"))
    assert intact.returncode == 0 and "audit log intact" in intact.stdout, intact.stderr
    for seq in chain:
        for change in (
            f"UPDATE audit SET reason = 'nothing happened' WHERE seq = {seq}",
            f"DELETE FROM audit WHERE seq = {seq}",
        ):
            copy = tmp_path / f"tampered-{seq}-{change[:6]}.db"
            url = copy_of_the_stack_database(broker, copy)
            tamper(copy, change)
            if seq == chain[0]:
                verdict = audit_verify(broker.settings, url)
                code, stdout, stderr = verdict.returncode, verdict.stdout, verdict.stderr
            else:
                result = CliRunner().invoke(
                    app, ["audit", "verify", "--database-url", url], env=broker.settings.as_environment()
                )
                code, stdout, stderr = result.exit_code, result.stdout, result.stderr
            assert code == 1, (change, stdout)
            assert f"tenant {tenant.name}" in stderr and "tampered" in stderr, stderr
            reliability.add()
