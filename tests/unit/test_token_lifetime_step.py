"""The get_token step's lifetime check: exact, save for the one-second tick between an IdP's two clock reads."""

import pytest

from sandbox.scenarios.library import StepFailed
from sandbox.scenarios.steps.tools import check_lifetime


@pytest.mark.parametrize("lived", [120, 121])
def test_the_set_lifetime_or_one_tick_more_passes(lived: int) -> None:
    evidence: dict = {}
    check_lifetime({"iat": 1_000, "exp": 1_000 + lived}, 120, evidence)
    assert evidence["lifetime_s"] == lived


@pytest.mark.parametrize("lived", [119, 122, 300])
def test_any_other_lifetime_fails_and_says_what_it_was(lived: int) -> None:
    with pytest.raises(StepFailed) as failed:
        check_lifetime({"iat": 1_000, "exp": 1_000 + lived}, 120, {})
    assert f"{lived}s" in str(failed.value)
    assert "120s" in str(failed.value)
