"""YAML files users write (scenarios, policies, agents files), loaded with the line of every value.

Validation errors then point at ``file:line`` and say what is expected there, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from sandbox.errors import SandboxError

Location = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class FileError(SandboxError):
    """A problem at one place in a user's file: ``<file>:<line>: <what>; <expected>``."""

    def __init__(self, path: Path, line: int, what: str, expected: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {what}", expected)


@dataclass(frozen=True)
class YamlDocument:
    path: Path
    data: Any
    lines: dict[Location, int]

    def line_of(self, location: Location) -> int:
        """The line of the deepest part of ``location`` that exists in the file."""
        for end in range(len(location), -1, -1):
            if location[:end] in self.lines:
                return self.lines[location[:end]]
        return 1

    def error(self, location: Location, what: str, expected: str) -> FileError:
        return FileError(self.path, self.line_of(location), what, expected)

    def validate(self, model: type[M], data: Any = None, at: Location = ()) -> M:
        """``model`` from the document (or from ``data`` found at ``at``), or a FileError at the first bad field."""
        try:
            return model.model_validate(self.data if data is None else data)
        except ValidationError as exc:
            raise self.validation_error(exc, at) from None

    def validation_error(self, exc: ValidationError, at: Location = ()) -> FileError:
        first = exc.errors()[0]
        location = (*at, *first["loc"])
        what, expected = describe(dotted(location), first)
        return self.error(location, what, expected)


def dotted(location: Location) -> str:
    """``steps[1].call_tool.expect`` for ("steps", 1, "call_tool", "expect")."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


def describe(field: str, error: Any) -> tuple[str, str]:
    """A pydantic error about ``field`` in words: what is wrong, and what is expected instead."""
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "missing":
        return f"{field} is missing", "add it"
    if kind == "extra_forbidden":
        return f"{field} is not a known field", "remove it or check its spelling"
    if "expected" in context:
        return f"{field} is {_shown(error.get('input'))}", f"expected {context['expected']}"
    return f"{field}: {error['msg']}", f"got {_shown(error.get('input'))}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_yaml(path: Path) -> YamlDocument:
    """Parse ``path``; a syntax error becomes a FileError with its line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SandboxError(f"cannot read {path}: {exc.strerror}", "check the path") from exc
    except UnicodeDecodeError as exc:  # a binary file, or text in another encoding
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise FileError(path, line, f"not UTF-8 text (byte {exc.start})", "save the file as UTF-8") from None
    lines: dict[Location, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = _build(root, (), lines, yaml.SafeLoader("")) if root is not None else None
    except yaml.MarkedYAMLError as exc:  # syntax, or a value no safe loader builds (a python/object tag, say)
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise FileError(path, line, f"not valid YAML: {exc.problem}", "fix the syntax at that line") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (a control character, say)
        line = text[: exc.position].count("\n") + 1
        raise FileError(path, line, f"not valid YAML: {exc.reason}", "remove that character") from None
    return YamlDocument(path, data, lines)


def _build(node: yaml.Node, location: Location, lines: dict[Location, int], loader: yaml.SafeLoader) -> Any:
    lines[location] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            result[key] = _build(value_node, (*location, key), lines, loader)
            lines[(*location, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*location, index), lines, loader) for index, item in enumerate(node.value)]
    return loader.construct_object(node)
