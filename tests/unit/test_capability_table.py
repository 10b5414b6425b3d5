"""The README's capability table: a cell states an IdP's declaration only when a marked test proved it."""

from __future__ import annotations

from pathlib import Path

import pytest
from capability_table import BEGIN, END, Proof, render_capability_table

PASSED = Proof("hydra", "key_rotation", True, "tests/e2e/test_hydra.py::test_key")
FAILED = Proof("hydra", "dual_secret_rotation", False, "tests/e2e/test_hydra.py::test_secret")


def test_cells_say_proved_failed_or_not_tested_and_the_rest_of_the_file_stays(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{BEGIN}\nold table\n{END}\nafter\n")
    render_capability_table(readme, [PASSED, FAILED, Proof("hydra", "key_rotation", True, "another")])
    text = readme.read_text()
    assert text.startswith(f"before\n{BEGIN}\n| capability | keycloak | hydra |") and text.endswith(f"{END}\nafter\n")
    assert "old table" not in text
    (key_row,) = [line for line in text.splitlines() if line.startswith("| a private_key_jwt client's keys")]
    assert key_row.endswith("| yes: the client's JWKS holds the old and the new key through the grace |")
    assert "(not tested in this run)" in key_row.split("|")[2]  # the Keycloak cell: no proof in this run
    (secret_row,) = [line for line in text.splitlines() if line.startswith("| a client secret rotates")]
    assert secret_row.endswith("| **FAILED** tests/e2e/test_hydra.py::test_secret |")


def test_a_file_without_the_markers_is_refused(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(pytest.UsageError, match="capability table"):
        render_capability_table(readme, [PASSED])
