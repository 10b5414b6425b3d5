import stat
from pathlib import Path

from sandbox.config import Settings
from sandbox.stack.process import ProcessRecord
from sandbox.stack.state import ComponentState, StackState, load_state, save_state
from sandbox.stack_secrets import Secrets


def test_state_survives_a_round_trip(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    state = StackState(
        "local",
        {"keycloak": ComponentState("keycloak", "u", "h", "l", {"http": 1}, ProcessRecord(42, 1.5), details={"a": 1})},
    )
    save_state(settings, state)
    assert load_state(settings) == state
    pooled = StackState("local", idp="keycloak", hydra_pool=3)  # what `down` in another shell needs to know
    save_state(settings, pooled)
    assert load_state(settings) == pooled


def test_the_tenants_the_stack_made_are_read_from_whichever_component_recorded_them(tmp_path: Path) -> None:
    made = {"acme": "http://127.0.0.1:18080/realms/acme", "globex": "http://127.0.0.1:18080/realms/globex"}
    state = StackState(
        "local",
        {
            "keycloak": ComponentState("keycloak", "u", "h", "l", {}, details={"tenants": made}),
            "broker": ComponentState("broker", "u", "h", "l", {}),
        },
    )
    assert StackState.from_json(state.to_json()).tenant_issuers == made
    assert StackState("local").tenant_issuers == {}


def test_secrets_are_private_and_shared_between_instances(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    one, two = Secrets(settings), Secrets(settings)
    first = one.get_or_create("a")
    second = two.get_or_create("b")  # must not drop "a", which `two` never saw in memory
    assert one.get("a") == first and one.get("b") == second
    assert one.get_or_create("a") == first
    assert stat.S_IMODE(settings.secrets_file.stat().st_mode) == 0o600
