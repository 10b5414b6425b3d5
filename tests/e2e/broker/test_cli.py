"""The same lifecycle through the ``mcp-sandbox`` command (run in-process against the stack's broker)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from sandbox.broker.store import broker_dir
from sandbox.cli import app

from .conftest import Broker, Tenant
from .test_lifecycle import refused, secret_credential, token_for


def run(*args: str, token: str | None = None, env: dict[str, str] | None = None) -> Result:
    environment = {"SANDBOX_BROKER_TOKEN": token} if token else {}
    return CliRunner().invoke(app, list(args), env={**environment, **(env or {})})


def ok(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_admin_login_prints_a_token_with_mfa(broker: Broker) -> None:
    tenant = broker.stack.tenants[1]
    result = run("admin", "login", "-t", tenant)
    assert result.exit_code == 0, result.stderr
    token = result.stdout.strip()
    assert broker.call("GET", f"/tenants/{tenant}/agents", token).status_code == 200
    response = broker.call(
        "POST",
        f"/tenants/{tenant}/agents",
        token,
        {"name": "p", "owner": "o", "role": "x", "environment": "production"},
    )
    assert response.status_code == 422  # past the MFA check: the token proves OTP


def test_lifecycle_through_the_cli(broker: Broker, tenant: Tenant, tmp_path: Path) -> None:
    alice, bob = tenant.admins["alice"].token(), tenant.admins["bob"].token()
    t = tenant.name
    provisioned = ok(
        run(
            "agents", "provision", "-t", t, "--name", "cli-agent", "--owner", "ops", "--role", "log-reader", token=alice
        )
    )
    agent_id = provisioned["agent"]["id"]
    assert [a["id"] for a in ok(run("agents", "list", "-t", t, token=alice)) if a["name"] == "cli-agent"] == [agent_id]
    assert "log-reader" in ok(run("agents", "roles", token=alice))

    changed = ok(
        run("agents", "role", "-t", t, agent_id, "--role", "read-only-analytics", "--reason", "cli", token=alice)
    )
    assert changed["scopes"] == ["mcp:tool:analytics.read"]
    assert token_for(tenant, secret_credential(provisioned)).scopes == {"mcp:tool:analytics.read"}

    config_file = tmp_path / "mcp.json"
    result = run(
        "agents", "config", "-t", t, agent_id, "--out", str(config_file), "--credential-env", "BOT_SECRET", token=alice
    )
    assert result.exit_code == 0, result.stderr
    assert provisioned["credential"]["client_secret"] not in config_file.read_text()

    rotated_run = run("agents", "rotate", "-t", t, agent_id, "--grace", "600", token=alice)
    rotated = ok(rotated_run)
    assert str(config_file.resolve()) in rotated_run.stderr  # the dependencies come first
    new = secret_credential(provisioned, rotated["credential"]["client_secret"])
    token_for(tenant, secret_credential(provisioned))
    ok(run("agents", "end-grace", "-t", t, agent_id, token=alice))
    refused(tenant, secret_credential(provisioned))
    old_token = token_for(tenant, new).access_token
    assert ok(run("agents", "dependencies", "-t", t, agent_id, token=alice))["configs"][0]["path"] == str(
        config_file.resolve()
    )
    assert ok(run("agents", "monitor", "-t", t, agent_id, token=alice))["tokens_issued"] >= 1

    revoked = ok(
        run(
            "agents",
            "revoke",
            agent_id,
            "--reason",
            "cli",
            "--verify-token-env",
            "OLD",
            token=bob,
            env={"OLD": old_token},
        )
    )
    assert revoked["agent"]["status"] == "revoked"
    verification = {v["server"]: v for v in revoked["verification"]}
    # The events and introspection servers refuse the old token at once; a jwt-mode server only once it expires.
    immediate = [server.url for server in broker.settings.mcp_servers if server.mode != "jwt"]
    assert all(verification[url]["rejected"] for url in immediate), verification
    refused(tenant, new)
    assert ok(run("agents", "revoke", agent_id, "-t", t, token=bob))["already_revoked"] is True
    actions = [e["action"] for e in ok(run("audit", "show", "-t", t, "--agent-id", agent_id, token=bob))]
    assert actions == [
        "agent.provisioned",
        "agent.role_changed",
        "agent.config_generated",
        "agent.rotated",
        "agent.grace_ended",
        "agent.revoked",
    ]


def test_cli_error_paths_are_one_line(broker: Broker, tenant: Tenant) -> None:
    alice, carol = tenant.admins["alice"].token(), tenant.admins["carol"].token()
    t = tenant.name
    one_line_error(
        run("agents", "provision", "-t", t, "--name", "e1", "--owner", "o", "--role", "root", token=carol),
        "unknown role 'root'",
    )
    one_line_error(
        run(
            "agents",
            "provision",
            "-t",
            t,
            "--name",
            "e2",
            "--owner",
            "o",
            "--role",
            "log-reader",
            "-e",
            "production",
            token=carol,
        ),
        "MFA",
    )
    pending = ok(
        run(
            "agents",
            "provision",
            "-t",
            t,
            "--name",
            "e3",
            "--owner",
            "o",
            "--role",
            "production-deployer",
            "-e",
            "production",
            token=alice,
        )
    )
    one_line_error(run("agents", "approve", "-t", t, pending["agent"]["id"], token=alice), "cannot approve")
    outsider = broker.sandbox_admin(broker.stack.tenants[0]).token()
    one_line_error(run("agents", "show", "-t", t, pending["agent"]["id"], token=outsider), "404")
    one_line_error(run("agents", "list", "-t", t), "401")
    bad_key = json.dumps({"kty": "RSA", "n": "abc", "e": "AQAB", "d": "secret"})
    key_file = Path(broker.settings.state_dir) / "bad-key.json"
    key_file.write_text(bad_key)
    try:
        one_line_error(
            run(
                "agents",
                "provision",
                "-t",
                t,
                "--name",
                "e4",
                "--owner",
                "o",
                "--role",
                "log-reader",
                "--credential-type",
                "private_key_jwt",
                "--jwk-file",
                str(key_file),
                token=alice,
            ),
            "private key material",
        )
    finally:
        key_file.unlink()


def test_tenants_are_created_by_the_operator_only(broker: Broker, tenant: Tenant) -> None:
    one_line_error(run("tenants", "create", "nope", "--admin", "x", token=tenant.admins["alice"].token()), "operator")
    created = ok(
        run(
            "tenants",
            "create",
            f"cli{tenant.name[-6:]}",
            "--admin",
            "dana",
            "--admin-without-otp",
            "eve",
            token=broker.operator_token(),
        )
    )
    assert [a["username"] for a in created["admins"]] == ["dana", "eve"]
    assert created["admins"][0]["otp_secret"] and created["admins"][1]["otp_secret"] is None


AGENTS = """\
tenant: {tenant}
agents:
  - name: reporting
    owner: data@example.com
    role: read-only-analytics
    environment: staging
  - name: shipper
    owner: ops@example.com
    role: {shipper_role}
    environment: staging
"""


AGENTS_AFTER = """\
tenant: {tenant}
agents:
  - name: shipper
    owner: ops@example.com
    role: log-reader
    environment: staging
"""


def test_apply_plans_checks_and_converges(broker: Broker, tenant: Tenant, tmp_path: Path) -> None:
    alice = tenant.admins["alice"].token()
    hand_made = broker.provision(tenant, alice, role="log-reader")["agent"]
    file = tmp_path / "agents.yaml"
    file.write_text(AGENTS.format(tenant=tenant.name, shipper_role="staging-deployer"))

    plan = ok(run("apply", str(file), "--plan", token=alice))
    assert plan == {
        "tenant": tenant.name,
        "plan": ["+ create reporting (read-only-analytics/staging)", "+ create shipper (staging-deployer/staging)"],
        "applied": False,
    }
    assert not {"reporting", "shipper"} & {
        a["name"] for a in broker.call("GET", f"/tenants/{tenant.name}/agents", alice).json()
    }

    applied = ok(run("apply", str(file), "--credentials-dir", str(tmp_path / "creds"), token=alice))
    assert applied["applied"] and len(applied["done"]) == 2
    written = json.loads((tmp_path / "creds" / "shipper.json").read_text())
    assert (tmp_path / "creds" / "shipper.json").stat().st_mode & 0o777 == 0o600
    assert token_for(tenant, secret_credential({"credential": written})).scopes == {
        "mcp:tool:deploy.read",
        "mcp:tool:deploy.staging.write",
    }

    again = ok(run("apply", str(file), token=alice))
    assert again["plan"] == [] and again["applied"] is False

    file.write_text(AGENTS.format(tenant=tenant.name, shipper_role="no-such-role"))
    result = run("apply", str(file), token=alice)
    one_line_error(result, f"{file}:9:", "unknown role 'no-such-role'", "nothing was changed")

    file.write_text(AGENTS_AFTER.format(tenant=tenant.name))
    changed = ok(run("apply", str(file), token=alice))
    assert changed["done"] == [
        "~ change role shipper: staging-deployer/staging -> log-reader/staging",
        "- revoke reporting (read-only-analytics/staging)",
    ]
    states = {a["name"]: a["status"] for a in broker.call("GET", f"/tenants/{tenant.name}/agents", alice).json()}
    assert states["reporting"] == "revoked" and states["shipper"] == "active"
    assert states[hand_made["name"]] == "active"  # never touched: not made by apply


def copy_of_the_database(broker: Broker, tmp_path: Path) -> Path:
    """A consistent copy of the stack broker's SQLite database (WAL included), to tamper with."""
    copy = tmp_path / "broker-copy.db"
    source = sqlite3.connect(broker_dir(broker.settings) / "broker.db")
    with sqlite3.connect(copy) as target:
        source.backup(target)
    source.close()
    return copy


def test_audit_verify_detects_a_tampered_entry(broker: Broker, tenant: Tenant, tmp_path: Path) -> None:
    result = run("audit", "verify")
    assert result.exit_code == 0 and "audit log intact" in result.stdout, result.stderr
    copy = copy_of_the_database(broker, tmp_path)
    database = f"sqlite:///{copy}"
    assert run("audit", "verify", "--database-url", database).exit_code == 0
    with sqlite3.connect(copy) as db:
        db.execute("DROP TRIGGER audit_no_update")  # what an attacker with file access could do
        db.execute("UPDATE audit SET reason = 'nothing to see' WHERE seq = (SELECT MAX(seq) FROM audit)")
    tampered = run("audit", "verify", "--database-url", database)
    assert tampered.exit_code == 1
    assert "does not match its hash" in tampered.stderr and "tampered with" in tampered.stderr


def test_the_audit_table_refuses_changes(broker: Broker, tenant: Tenant, tmp_path: Path) -> None:
    copy = copy_of_the_database(broker, tmp_path)
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT COUNT(*) FROM audit").fetchone()[0] > 0
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM audit")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE audit SET actor = 'someone else'")


def test_servers_list_register_and_unregister(broker: Broker) -> None:
    operator = broker.operator_token()
    listed = ok(run("servers", "list", "-o", "json", token=operator))
    stack_servers = {server.url for server in broker.settings.mcp_servers}
    assert stack_servers <= {server["url"] for server in listed}
    table = run("servers", "list", "-o", "table", token=operator)
    assert table.exit_code == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:2] == ["url", "(audience)"]
    assert broker.settings.mcp_url in table.stdout

    extra = "http://127.0.0.1:9/mcp-cli-test"
    registered = ok(run("servers", "register", extra, token=operator))
    assert registered == {"url": extra, "events_url": None}
    assert extra in {server["url"] for server in ok(run("servers", "list", "-o", "json", token=operator))}
    gone = run("servers", "unregister", extra, token=operator)
    assert gone.exit_code == 0, gone.stderr
    assert extra not in {server["url"] for server in ok(run("servers", "list", "-o", "json", token=operator))}


def test_agents_list_as_a_table(broker: Broker, tenant: Tenant) -> None:
    alice = tenant.admins["alice"].token()
    broker.provision(tenant, alice, name="table-agent", role="log-reader")
    result = run("agents", "list", "-t", tenant.name, "-o", "table", token=alice)
    assert result.exit_code == 0, result.stderr
    header, _rule, *rows = result.stdout.splitlines()
    assert header.split()[:5] == ["id", "name", "role", "environment", "status"]
    assert any("table-agent" in row and "log-reader" in row and "active" in row for row in rows)


def test_clock_show_and_a_refused_field_in_words(broker: Broker, tenant: Tenant) -> None:
    alice = tenant.admins["alice"].token()
    clock = ok(run("clock", "show", "-t", tenant.name, token=alice))
    assert clock["tenant"] == tenant.name and "now" in clock
    missing = run("agents", "delegations", "-t", tenant.name, "no-such-agent", token=alice)
    one_line_error(missing, "broker refused (404 not_found)", "no agent 'no-such-agent'")


def test_audit_show_filters_by_action_and_time_and_exports_json_lines(broker: Broker, tenant: Tenant) -> None:
    alice = tenant.admins["alice"].token()
    agent = broker.provision(tenant, alice, role="log-reader")["agent"]["id"]
    everything = ok(run("audit", "show", "-t", tenant.name, "--agent-id", agent, "-o", "json", token=alice))
    assert [entry["action"] for entry in everything][:1] == ["agent.provisioned"]
    lines = run("audit", "show", "-t", tenant.name, "--action", "agent.provisioned", "-o", "jsonl", token=alice)
    assert lines.exit_code == 0, lines.stderr
    entries = [json.loads(line) for line in lines.stdout.splitlines()]
    assert entries and {entry["action"] for entry in entries} == {"agent.provisioned"}
    later = run("audit", "show", "-t", tenant.name, "--since", "2999-01-01", "-o", "json", token=alice)
    assert ok(later) == []
