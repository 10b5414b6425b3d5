"""Read a scenario file and check all of it, with file and line for every problem, before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.modes import MODES
from sandbox.scenarios import steps as _steps  # noqa: F401 - registers the step library
from sandbox.scenarios.library import LIBRARY
from sandbox.scenarios.model import Header, Scenario, Step
from sandbox.yamlfile import YamlDocument, load_yaml

if TYPE_CHECKING:
    from sandbox.scenarios.catalog import Catalog


def load_scenario(path: Path, catalog: Catalog | None = None) -> Scenario:
    """The scenario in ``path``, every step checked; with a catalog, every name checked against the stack's too."""
    document = load_yaml(path)
    if not isinstance(document.data, dict):
        raise document.error((), "a scenario is a mapping", "start with `name:`, `description:` and `steps:`")
    raw_steps = document.data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise document.error(("steps",), "`steps` is missing or empty", "a list of steps from the step library")
    header = document.validate(Header, {k: v for k, v in document.data.items() if k != "steps"})
    steps = [_step(document, index, raw, header) for index, raw in enumerate(raw_steps)]
    if catalog is not None:
        catalog.check(document, header, steps)
    return Scenario(path, header, steps)


def _step(document: YamlDocument, index: int, raw: Any, header: Header) -> Step:
    location = ("steps", index)
    if not isinstance(raw, dict) or len(raw) != 1:
        raise document.error(location, f"step {index + 1} is not a single `name: arguments` pair", _known_steps())
    name, arguments = next(iter(raw.items()))
    definition = LIBRARY.get(name)
    if definition is None:
        raise document.error(location, f"unknown step {name!r}", _known_steps())
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, dict) and definition.shorthand:
        arguments = {definition.shorthand: arguments}
    validated = document.validate(definition.arguments, arguments, at=(*location, name))
    known = {
        "agents": list(header.agents),
        "admins": header.admin_names,
        "users": header.user_names,
        "servers": [*header.servers, *MODES],
        "tenants": list(header.tenants),
    }
    references = {**getattr(validated, "references", {}), "tenant": "tenants", "data_tenant": "tenants"}
    for field, section in references.items():
        value = getattr(validated, field, None)
        for named in value if isinstance(value, list) else [value]:
            if isinstance(named, str) and named not in known[section]:
                raise document.error(
                    (*location, name, field),
                    f"{name} names {named!r}, which the scenario does not declare",
                    f"declare it under `{section}:` (known: {', '.join(known[section]) or 'none'})",
                )
    return Step(index, name, validated, document.line_of((*location, name)))


def _known_steps() -> str:
    return f"expected one of: {', '.join(sorted(LIBRARY))}"


def scenario_files(paths: list[Path]) -> list[Path]:
    """The scenario files named, with directories expanded to their *.yaml files in name order."""
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    return found
