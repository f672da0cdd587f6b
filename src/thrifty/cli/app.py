"""The typer app and helpers shared by every command module."""

from __future__ import annotations

import sys
from typing import Any, Callable

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="thrifty",
    help="Distil an LLM text classifier into a small, fast student, paying the LLM for as few labels as possible.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ledger_app = typer.Typer(help="Inspect the ledger of teacher calls (cache, cost, provenance).", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")

console = Console(stderr=False)
if not console.is_terminal:  # piped or logged: don't squeeze tables into 80 columns
    console = Console(stderr=False, width=160)
err_console = Console(stderr=True)


# typer's own exits and usage errors, named through typer: recent typer vendors click (no `click` module to import)
_CLI_EXITS: tuple[type[BaseException], ...] = (
    typer.Exit, typer.Abort, *(c for c in typer.BadParameter.__mro__ if c.__name__ in ("UsageError", "ClickException")))


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn thrifty's own errors into one clear red line (no traceback) and the error's exit code:
    2 for a usage or config error, 1 for a run failure (see ``ThriftyError.exit_code``)."""
    import functools

    from ..errors import ThriftyError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ThriftyError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt as e:
            # a teacher's Interrupted says what it waited for and what may be billed; a bare Ctrl-C
            # came between requests, when every answer received is already in the ledger
            err_console.print(f"[yellow]{e}[/]" if str(e) else
                "[yellow]interrupted.[/] Every answer received is saved in the ledger: run the same command again "
                "(for distill: --resume RUN_DIR) and texts already answered are not paid again.", soft_wrap=True)
            sys.exit(130)
        except _CLI_EXITS:
            raise  # typer's own exits and usage errors
        except Exception as e:  # not one of thrifty's own errors: a bug, reported as one
            err_console.print(f"[bold red]internal error:[/] {escape(bug_report(e))}", soft_wrap=True)
            sys.exit(1)

    return wrapper


def bug_report(e: BaseException) -> str:
    """Write the traceback to a file and say where it is and where to report it (no traceback on screen)."""
    import tempfile
    import traceback

    from .. import __version__

    fd, path = tempfile.mkstemp(prefix="thrifty-bug-", suffix=".txt")
    with open(fd, "w", encoding="utf-8") as f:
        f.write(f"thrifty {__version__}, python {sys.version.split()[0]}\n\n")
        f.write("".join(traceback.format_exception(type(e), e, e.__traceback__)))
    return (f"{type(e).__name__}. This is a bug in thrifty: please report it to the maintainers with the command you "
            f"ran and the traceback written to {path}.")
