"""The published JSON Schema of scenario files, made from the same models the loader validates with."""

from __future__ import annotations

import json
from typing import Any

from sandbox.scenarios import steps as _steps  # noqa: F401 - registers the step library
from sandbox.scenarios.library import LIBRARY
from sandbox.scenarios.model import Header

SCHEMA_ID = "urn:mcp-agent-sandbox:scenario"


def scenario_schema() -> dict[str, Any]:
    header = Header.model_json_schema(ref_template="#/$defs/{model}")
    definitions: dict[str, Any] = header.pop("$defs", {})
    variants = []
    for name, definition in sorted(LIBRARY.items()):
        arguments = definition.arguments.model_json_schema(ref_template="#/$defs/{model}")
        definitions.update(arguments.pop("$defs", {}))
        arguments["description"] = definition.doc
        accepted: dict[str, Any] = arguments
        if definition.shorthand:
            shorthand = arguments["properties"][definition.shorthand]
            accepted = {
                "anyOf": [arguments, {**shorthand, "description": f"Shorthand for {{{definition.shorthand}: …}}"}]
            }
        variants.append(
            {"type": "object", "properties": {name: accepted}, "required": [name], "additionalProperties": False}
        )
    header["properties"]["steps"] = {"type": "array", "minItems": 1, "items": {"oneOf": variants}}
    header["required"] = [*header.get("required", []), "steps"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **header, "$defs": definitions}


def schema_text() -> str:
    return json.dumps(scenario_schema(), indent=2, sort_keys=True) + "\n"
