"""Unit tests: no servers, and no settings leaking in from the environment (the plugin sets SANDBOX_* for e2e)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_sandbox_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SANDBOX_") or key == "JAVA_HOME":
            monkeypatch.delenv(key)
