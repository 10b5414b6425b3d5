"""How listing commands print: ``-o table`` for people, ``-o json`` for scripts, ``-o jsonl`` (one JSON object
a line) for log tools.

Without ``-o``, a terminal gets the table and a pipe or a file gets JSON, so ``mcp-sandbox agents list -t acme``
reads well and ``… | jq`` keeps working.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

Format = Literal["table", "json", "jsonl"]

OutputOption = Annotated[
    Format | None,
    typer.Option("--output", "-o", help="table, json or jsonl; default: a table on a terminal, JSON when piped."),
]


@dataclass(frozen=True)
class Column:
    """One column: its heading and how to show a row's value (a key of the row, or a function of it)."""

    heading: str
    value: str | Callable[[dict[str, Any]], Any]

    def cell(self, row: dict[str, Any]) -> str:
        value = row.get(self.value) if isinstance(self.value, str) else self.value(row)
        if value is None:
            return ""
        if isinstance(value, list | tuple):
            return ", ".join(map(str, value))
        return str(value)


def chosen(output: Format | None) -> Format:
    return output or ("table" if sys.stdout.isatty() else "json")


def emit(value: Any, output: Format | None, columns: Sequence[Column] = ()) -> None:
    """Print ``value`` (a list of rows, for a table) in the chosen format."""
    if chosen(output) == "jsonl" and isinstance(value, list):
        sys.stdout.writelines(json.dumps(row) + "\n" for row in value)
        return
    if chosen(output) != "table" or not columns:
        sys.stdout.write(json.dumps(value, indent=2) + "\n")
        return
    rows = value if isinstance(value, list) else [value]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column.heading, overflow="fold")  # ids and URLs stay whole, to copy
    for row in rows:
        table.add_row(*(escape(column.cell(row)) for column in columns))
    # A terminal wraps the table to its width; a pipe or a file gets each row on one line.
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 1000)
    console.print(table if rows else "(none)", highlight=False)
