"""How the command line reports a failure: one ``error:`` line with its cause and its fix, and a non-zero exit.

Every command prints its errors through :func:`fail`; :func:`run_command_line` is the entry point, which turns
usage mistakes (an unknown option, a value of the wrong type) into the same one line instead of a help box,
and a bug into one line that says so, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer._click import exceptions as usage  # typer's own click (pinned typer<0.30): its usage errors

from sandbox.errors import SandboxError

T = TypeVar("T")

#: Exit codes: 1 an error a user can fix, 2 the command line itself was wrong.
FAILED = 1
USAGE = 2

_err = Console(stderr=True, soft_wrap=True)


def print_error(message: str) -> None:
    """Print ``error: <message>`` as one line (the message is text, never markup)."""
    _err.print(f"[red]error:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)


def fail(error: SandboxError, code: int = FAILED) -> NoReturn:
    """Print the error's one line and leave with ``code``."""
    print_error(str(error))
    raise typer.Exit(code)


def guarded(action: Callable[[], T]) -> T:
    """``action()``, with a SandboxError printed as one line."""
    try:
        return action()
    except SandboxError as error:
        fail(error)


def writable_file(path: Path, option: str) -> Path:
    """``path`` if a report can be written there: its directory exists and it is not itself a directory.

    Checked before a command runs, so a typo costs nothing and nothing is created where it was not asked for.
    """
    if path.is_dir():
        raise SandboxError(f"{option} {path} is a directory", "name a file inside it")
    if not path.parent.is_dir():
        raise SandboxError(f"{option} {path}: the directory {path.parent} does not exist", "create it first")
    return path


def run_command_line(app: typer.Typer, args: Sequence[str] | None = None) -> int:
    """Run ``app`` on ``args`` (default: the process's) and return its exit code; every error is one line."""
    try:
        result = app(args=list(args) if args is not None else None, prog_name="mcp-sandbox", standalone_mode=False)
    except usage.NoArgsIsHelpError as exc:
        exc.show()
        return USAGE
    except usage.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "mcp-sandbox"
        message = exc.format_message().replace("Value error, ", "").rstrip(".")
        print_error(f"{message}; see `{command} --help`")
        return USAGE
    except usage.ClickException as exc:
        print_error(exc.format_message())
        return exc.exit_code
    except typer.Abort:
        print_error("aborted")
        return FAILED
    except typer.Exit as exc:
        return exc.exit_code
    except SandboxError as error:
        print_error(str(error))
        return FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: still one line, and the way to report it
        print_error(
            f"internal error ({type(exc).__name__}: {exc}); this is a bug in mcp-sandbox: "
            "please report it with the command you ran"
        )
        return FAILED
    return result if isinstance(result, int) else 0
