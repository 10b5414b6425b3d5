"""The provisioning benchmark's account of where the broker's time went: built from the run's own figures."""

from __future__ import annotations

from typing import Any

from sandbox.bench.clients import BenchAgent
from sandbox.bench.provisioning import Lane, _steps, _through_broker, _why_slower
from sandbox.bench.stats import summarize


def _call(median: float) -> dict:
    return summarize([median])


def test_why_slower_gives_the_calls_the_broker_steps_and_the_rest_from_the_figures() -> None:
    broker = {
        "provision_call": _call(120),
        "revoke_call": _call(90),
        "provision_steps_ms": _steps(
            [
                {"provisioning_recorded": 4, "idp_client_created": 60, "status_recorded": 70},
                {"provisioning_recorded": 6, "idp_client_created": 64, "status_recorded": 74},
            ]
        ),
        "revoke_steps_ms": _steps(
            [{"first_event_answered": 12, "idp_disabled": 30, "closing_event_answered_and_client_removed": 55}]
        ),
    }
    direct = {"provision_call": _call(40), "revoke_call": _call(31)}
    why = _why_slower(broker, direct)
    assert "provision 120 ms vs 40 ms, revoke 90 ms vs 31 ms" in why
    assert "provision: provisioning_recorded 5, idp_client_created 62, status_recorded 72" in why
    assert "revoke: first_event_answered 12, idp_disabled 30, closing_event_answered_and_client_removed 55" in why
    assert why.endswith("provision 48 ms, revoke 35 ms")  # 120 - 72 and 90 - 55
    assert "SQLite" not in why and "commit" not in why  # nothing the run did not measure


def test_why_slower_says_so_when_the_broker_reported_no_steps() -> None:
    broker = {"provision_call": _call(120), "revoke_call": _call(90)}
    direct = {"provision_call": _call(40), "revoke_call": _call(31)}
    why = _why_slower(broker, direct)
    assert "provision 120 ms vs 40 ms" in why
    assert "reported no steps" in why and "outside those steps" not in why


def test_only_a_lane_with_broker_steps_reports_them() -> None:
    lane = Lane()
    lane.agents, lane.provision_seconds, lane.revoke_seconds = 1, 1.0, 1.0
    lane.provision_ms, lane.revoke_ms = [100.0], [80.0]
    assert "provision_steps_ms" not in lane.figures() and "revoke_steps_ms" not in lane.figures()
    lane.provision_steps.append({"provisioning_recorded": 3.0, "status_recorded": 50.0})
    figures = lane.figures()
    assert list(figures["provision_steps_ms"]) == ["provisioning_recorded", "status_recorded"]
    assert figures["provision_steps_ms"]["status_recorded"]["median"] == 50.0
    assert "revoke_steps_ms" not in figures


class AnsweringBroker:
    """The operator's broker client, answering as the broker does (its steps, or none for an already revoked one)."""

    async def provision(self, tenant: str) -> BenchAgent:
        return BenchAgent("a1", tenant, "agent-a", "http://127.0.0.1:1/token", "s", steps_ms={"status_recorded": 9.0})

    async def revoke(self, agent: BenchAgent) -> dict[str, Any]:
        if agent.id == "gone":
            return {"already_revoked": True, "steps_ms": {}}
        return {"already_revoked": False, "steps_ms": {"idp_disabled": 7.0}}


async def test_the_broker_lane_keeps_the_steps_of_each_answer() -> None:
    lane = Lane()
    provision, revoke = _through_broker(AnsweringBroker(), "acme", lane)  # type: ignore[arg-type]
    agent = await provision()
    await revoke(agent)
    await revoke(BenchAgent("gone", "acme", "agent-gone", "http://127.0.0.1:1/token", "s"))
    assert lane.provision_steps == [{"status_recorded": 9.0}]
    assert lane.revoke_steps == [{"idp_disabled": 7.0}]  # an answer without steps adds nothing
