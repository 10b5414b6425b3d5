"""auth-overhead says where a mode's added time went from the calls' own Server-Timing steps, not a fixed text."""

from __future__ import annotations

from sandbox.bench.auth_overhead import SDK, Samples, _why_added, _why_versus_sdk


def samples() -> Samples:
    steps = {"read": [0.10] * 3, "verify": [0.01] * 3, "authorize": [0.05] * 3, "sdk": [1.0] * 3}
    with_jwt = {**steps, "verify": [0.30] * 3}
    return Samples(
        calls={"no auth": [2.0, 2.0, 2.0], "jwt": [2.5, 2.5, 2.5], SDK: [2.2, 2.2, 2.2]},
        steps={"no auth": steps, "jwt": with_jwt, SDK: {}},
    )


def test_the_added_time_is_split_into_the_steps_that_grew_and_the_rest() -> None:
    why = _why_added("jwt", samples())
    assert why.startswith("0.500 ms more at the median, on a call that takes 2.000 ms without auth")
    assert "verify +0.290" in why and "read +0.000" in why
    assert "+0.290 ms inside the endpoint, +0.210 ms outside it" in why


def test_without_server_timing_only_the_medians_are_said() -> None:
    bare = samples()
    bare.steps["jwt"] = {}
    assert _why_added("jwt", bare) == "0.500 ms more at the median, on a call that takes 2.000 ms without auth"


def test_against_the_sdk_our_steps_are_named_with_their_medians() -> None:
    why = _why_versus_sdk(samples())
    assert why.startswith("median 2.500 ms ours vs 2.200 ms behind the SDK's bearer middleware")
    assert "read 0.100, verify 0.300, authorize 0.050, sdk 1.000" in why
