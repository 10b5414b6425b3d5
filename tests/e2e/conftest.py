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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)
