"""End-to-end tests: the real stack, started once per test session by the sandbox pytest plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def docker_images() -> dict[str, str]:
    """The docker runtime's images as SANDBOX_*_IMAGE settings: engine, tools and images made here when missing
    (python -m sandbox.stack.images; cached). Tests that need them fail, never skip, when that cannot be done."""
    from sandbox.config import load_settings
    from sandbox.errors import SandboxError
    from sandbox.stack.images import prepare

    try:
        return prepare(load_settings(), lambda step: None).as_environment()
    except SandboxError as error:
        pytest.fail(f"the docker runtime's tests need a Docker engine and its images: {error}", pytrace=False)


#: Scenarios that still fail on Ory Hydra, each for a defect named here (the README's "known gaps on Hydra").
#: They run every time; strict ones fail the run the day they pass, so the entry is removed with the fix.
KNOWN_HYDRA_FAILURES = {
    "rotation-private-key[hydra]": (
        False,
        "a few of 1,000 calls get no token (3 to 31 a run): Hydra on its SQLite database answers concurrent "
        "private_key_jwt token requests with HTTP 500, waits past 10 s or invalid_client when their writes (each "
        "assertion's jti) collide on the database lock; not the rotation: it happens without one",
    ),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)
        if item.name in KNOWN_HYDRA_FAILURES:
            strict, reason = KNOWN_HYDRA_FAILURES[item.name]
            item.add_marker(pytest.mark.xfail(strict=strict, reason=f"known gap on Hydra: {reason}"))
