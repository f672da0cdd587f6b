"""The typer app and helpers shared by every command module."""

from __future__ import annotations

import sys
from typing import Any, Callable

import typer
from rich.console import Console

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
            err_console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            err_console.print(
                "[yellow]interrupted.[/] Every paid answer is saved in the ledger: run the same command again "
                "(for distill: --resume RUN_DIR) and nothing is paid twice."
            )
            sys.exit(130)

    return wrapper
