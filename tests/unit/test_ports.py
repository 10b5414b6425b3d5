import socket

import pytest

from sandbox.errors import PortInUse
from sandbox.stack.ports import ensure_free, free_port, is_free


def test_a_listening_port_is_reported_with_its_purpose_and_setting() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not is_free("127.0.0.1", port)
        with pytest.raises(PortInUse) as caught:
            ensure_free("127.0.0.1", port, "keycloak http", "SANDBOX_KEYCLOAK_PORT")
    message = str(caught.value)
    assert f"port {port}" in message and "keycloak http" in message and "SANDBOX_KEYCLOAK_PORT=" in message


def test_a_free_port_is_free() -> None:
    port = free_port()
    assert is_free("127.0.0.1", port)
    ensure_free("127.0.0.1", port, "x", "Y")


def test_a_private_stack_gets_a_different_free_port_for_each_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sandbox.stack.ports import PORT_SETTINGS, private_stack_environment

    for _ in range(20):  # the OS hands out ports in turn; twenty draws would show a repeat within one environment
        env = private_stack_environment(tmp_path)
        ports = [int(env[f"SANDBOX_{name}"]) for name in PORT_SETTINGS]
        assert len(set(ports)) == len(PORT_SETTINGS), ports
        assert env["SANDBOX_STATE_DIR"] == str(tmp_path)
