"""A tenant's movable clock through the stack's broker: moving one tenant's time makes its idle agents dormant
after their period while an agent active after the move stays active, and leaves every other tenant's time alone."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from .conftest import Broker, Tenant
from .test_lifecycle import refused, secret_credential, token_for
from .test_resilience import sandbox_tenant, second_broker

DAY = 86400


def test_advancing_a_tenants_clock_makes_its_idle_agents_dormant(broker: Broker, tenant: Tenant) -> None:
    moved = broker.new_tenant("clock")
    admin = moved.admins["alice"].token()
    idle = broker.provision(moved, admin, role="read-only-analytics")  # dormant after 30 days
    active = broker.provision(moved, admin, role="read-only-analytics")
    bystander = broker.provision(tenant, tenant.admins["alice"].token(), role="log-reader")  # 14 days, elsewhere
    clock = f"/tenants/{moved.name}/clock"
    before = broker.call("GET", clock, admin).json()
    assert before["offset_seconds"] == 0 and before["movable"] is True and before["moves"] == []

    advanced = broker.call("POST", clock, admin, {"advance": {"days": 31}, "reason": "scenario 8"})
    assert advanced.status_code == 200, advanced.text
    after = advanced.json()
    assert after["offset_seconds"] == 31 * DAY and len(after["moves"]) == 1
    shift = datetime.fromisoformat(after["now"]) - datetime.fromisoformat(after["real_now"])
    assert abs(shift - timedelta(days=31)) < timedelta(seconds=1)
    token_for(moved, secret_credential(active))  # a token after the move: active at the tenant's "now"

    scan = broker.call("POST", f"/tenants/{moved.name}/dormancy/scan", admin).json()
    assert [a["id"] for a in scan["dormant"]] == [idle["agent"]["id"]]
    assert datetime.fromisoformat(scan["as_of"]) - datetime.fromisoformat(after["real_now"]) >= timedelta(days=31)
    queue = broker.call("GET", f"/tenants/{moved.name}/review-queue", admin).json()
    assert [a["id"] for a in queue] == [idle["agent"]["id"]]
    refused(moved, secret_credential(idle))
    review = f"/tenants/{moved.name}/agents/{idle['agent']['id']}/review"
    assert broker.call("POST", review, admin, {"decision": "revoke"}).json()["status"] == "revoked"
    assert (
        broker.call("GET", f"/tenants/{moved.name}/agents/{active['agent']['id']}", admin).json()["status"] == "active"
    )
    token_for(moved, secret_credential(active))

    entries = broker.call("GET", f"/tenants/{moved.name}/audit", admin).json()
    moves = [e for e in entries if e["action"] == "tenant.clock_advanced"]
    assert (
        len(moves) == 1 and moves[0]["actor"].startswith("alice (tenant_admin") and moves[0]["reason"] == "scenario 8"
    )
    dormant = next(e for e in entries if e["action"] == "agent.dormant")
    assert "for 30 days" in dormant["reason"]

    others = broker.call("GET", f"/tenants/{tenant.name}/clock", tenant.admins["alice"].token()).json()
    assert others["offset_seconds"] == 0  # every other tenant keeps its own time
    elsewhere = broker.call("POST", f"/tenants/{tenant.name}/dormancy/scan", tenant.admins["alice"].token()).json()
    assert bystander["agent"]["id"] not in {a["id"] for a in elsewhere["dormant"]}


def test_who_may_move_a_clock_and_by_how_much(broker: Broker, tenant: Tenant, tmp_path: Path) -> None:
    moved = broker.new_tenant("clock")
    clock = f"/tenants/{moved.name}/clock"
    by_operator = broker.call("POST", clock, broker.operator_token(), {"advance": {"hours": 2, "minutes": 30}})
    assert by_operator.status_code == 200 and by_operator.json()["offset_seconds"] == 9000
    admin = moved.admins["carol"].token()
    assert broker.call("POST", clock, admin, {"advance": {"days": 0}}).status_code == 400
    assert broker.call("POST", clock, admin, {"advance": {"days": -1}}).status_code == 422
    assert broker.call("POST", clock, tenant.admins["carol"].token(), {"advance": {"days": 1}}).status_code == 404
    assert broker.call("POST", clock, None, {"advance": {"days": 1}}).status_code == 401
    assert broker.call("GET", clock, admin).json()["offset_seconds"] == 9000

    with second_broker(broker, tmp_path) as real_time:  # a broker without SANDBOX_BROKER_MOVABLE_CLOCK
        home = sandbox_tenant(real_time)
        refusal = real_time.call(
            "POST", f"/tenants/{home.name}/clock", home.admins["admin"].token(), {"advance": {"days": 1}}
        )
        assert refusal.status_code == 403 and "SANDBOX_BROKER_MOVABLE_CLOCK" in refusal.json()["fix"]
        assert (
            real_time.call("GET", f"/tenants/{home.name}/clock", home.admins["admin"].token()).json()["movable"]
            is False
        )
