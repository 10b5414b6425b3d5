"""Files users write, broken at random: every scenario, the policy and an agents file, each mutated line by line
(dropped, doubled, re-indented, garbled, truncated). Each either still loads or is refused with one error that
names the file and a line inside it, and says what is expected: never a traceback, never a line that is not
there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.admin.apply import load_agents_file
from sandbox.broker.policy import Policy
from sandbox.errors import SandboxError
from sandbox.scenarios.loader import load_scenario
from sandbox.toolmap import ToolMap
from sandbox.yamlfile import FileError

ROOT = Path(__file__).parent.parent.parent
TOOLS = ToolMap.load(ROOT / "fixtures" / "tools.yaml")
FILES = {
    "policy": (ROOT / "fixtures" / "policy.yaml", lambda path: Policy.load(path, TOOLS)),
    "agents file": (ROOT / "scenarios" / "files" / "agents-v1.yaml", load_agents_file),
    **{f"scenario {p.name}": (p, load_scenario) for p in sorted((ROOT / "scenarios").glob("*.yaml"))},
}
GARBAGE = st.sampled_from(["", ":", "- ", "{", "}", "[", "]", "&a", "*a", "!!python/object:os.system", "\t", "'", '"'])


def mutate(lines: list[str], kind: str, index: int, text: str) -> list[str]:
    line = lines[index]
    if kind == "drop":
        return lines[:index] + lines[index + 1 :]
    if kind == "double":
        return [*lines[: index + 1], line, *lines[index + 1 :]]
    if kind == "indent":
        return [*lines[:index], "   " + line, *lines[index + 1 :]]
    if kind == "dedent":
        return [*lines[:index], line.lstrip(), *lines[index + 1 :]]
    if kind == "garble":
        cut = len(line) // 2
        return [*lines[:index], line[:cut] + text + line[cut:], *lines[index + 1 :]]
    if kind == "value":
        return [*lines[:index], re.sub(r":\s.*$", lambda _: f": {text}", line), *lines[index + 1 :]]  # text as is
    return lines[: index + 1]  # truncate after this line


@pytest.mark.reliability(
    "Hostile input",
    "Malformed scenario, policy and agents files (each line dropped, doubled, re-indented, garbled, truncated)",
    "loads, or one error naming `<file>:<line>` inside the file and what is expected",
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(sorted(FILES)),
    kind=st.sampled_from(["drop", "double", "indent", "dedent", "garble", "value", "truncate"]),
    position=st.floats(0, 1, exclude_max=True),
    text=GARBAGE | st.text(max_size=12),
)
def test_a_broken_file_is_refused_with_its_file_and_line(
    tmp_path: Path, reliability: Any, which: str, kind: str, position: float, text: str
) -> None:
    source, load = FILES[which]
    lines = source.read_text().splitlines()
    broken = tmp_path / source.name
    broken.write_text("\n".join(mutate(lines, kind, int(position * len(lines)), text)) + "\n")
    try:
        load(broken)
    except FileError as error:
        total = len(broken.read_text().splitlines())
        assert str(error).startswith(f"{broken}:{error.line}: ") and 1 <= error.line <= total + 1, str(error)
        assert error.fix and "\n" not in str(error), str(error)
    except SandboxError as error:  # not tied to a line, e.g. a file that reads but references nothing valid
        pytest.fail(f"{which} {kind}: refused without a line: {error}")
    reliability.add()


def test_every_shipped_file_loads_as_a_control() -> None:
    for source, load in FILES.values():
        load(source)
