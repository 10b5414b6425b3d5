"""The broker's answer to a request whose fields do not validate, in the shape of its other errors.

``{"error": "invalid_request", "detail", "cause", "fix", "fields": [{"field", "problem", "expected"}]}``:
each field named as the request carries it (``mode``, ``advance.days``, ``status`` of the query) with what
was wrong and what is allowed, so a client shows words, never a list of pydantic error dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sandbox.yamlfile import describe, dotted

STATUS = 422
CODE = "invalid_request"

#: Where a field came from, when not from the body.
_PLACES = {"query": "query parameter", "path": "path parameter", "header": "header"}


@dataclass(frozen=True)
class FieldProblem:
    field: str
    problem: str
    expected: str


def field_problems(errors: Sequence[Any]) -> list[FieldProblem]:
    """Each pydantic error of a request as a field, what is wrong with it, and what is expected."""
    problems = []
    for error in errors:
        place, *location = error.get("loc") or ("body",)
        if place == "body" and not location and error.get("type") == "missing":
            problems.append(FieldProblem("(body)", "the request has no JSON body", "send a JSON object"))
            continue
        if error.get("type") == "json_invalid":
            problems.append(FieldProblem("(body)", "the body is not valid JSON", "send a JSON object"))
            continue
        field = dotted(tuple(location)) if location else "(body)"
        if place in _PLACES:
            field = f"{field} ({_PLACES[place]})"
        problem, expected = describe(field, error)
        problems.append(FieldProblem(field, problem, expected))
    return problems


def invalid_request_body(errors: Sequence[Any]) -> dict[str, Any]:
    """The JSON answer to a request whose fields do not validate."""
    problems = field_problems(errors) or [FieldProblem("(body)", "the request is not valid", "see /docs")]
    cause = "; ".join(f"{p.problem} ({p.expected})" for p in problems)
    fix = f"correct {', '.join(dict.fromkeys(p.field for p in problems))} and send the request again"
    return {
        "error": CODE,
        "detail": f"{cause}; {fix}",
        "cause": cause,
        "fix": fix,
        "fields": [asdict(p) for p in problems],
    }
