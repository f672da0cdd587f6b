"""What makes the CLI script well: ``--version``, ``-v/--verbose`` logging, and ``--json`` output.

Exit codes (see ``ThriftyError.exit_code``): 0 ok, 1 the run failed, 2 usage or config error,
130 interrupted. With ``--json`` a command prints exactly one JSON object on stdout and its human
output goes to stderr.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from typing import Any, Callable, Iterator

import typer
from rich.logging import RichHandler

from .app import app, console, err_console

JsonFlag = typer.Option(False, "--json", help="Print one JSON object on stdout; human output goes to stderr.")

_handler: logging.Handler | None = None


def configure_logging(verbose: bool) -> None:
    """Send thrifty's log records to stderr through rich: warnings always, retries and waits with -v."""
    global _handler
    logger = logging.getLogger("thrifty")
    if _handler is not None:
        logger.removeHandler(_handler)
    _handler = RichHandler(console=err_console, show_path=False, show_time=verbose, markup=False)
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"thrifty {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print thrifty's version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Log retries, Retry-After waits and Batch API polling to stderr."),
) -> None:
    configure_logging(verbose)


@contextlib.contextmanager
def json_output(enabled: bool) -> Iterator[None]:
    """While ``enabled``, the human console writes to stderr so that stdout carries only the JSON object."""
    if not enabled:
        yield
        return
    before = console.stderr
    console.stderr = True
    try:
        yield
    finally:
        console.stderr = before


def emit_json(obj: dict[str, Any]) -> None:
    """The one JSON object a ``--json`` command prints on stdout."""
    typer.echo(json.dumps(obj, default=str))


def json_command(fn: Callable[..., dict[str, Any] | None]) -> Callable[..., None]:
    """For a command with a ``json_mode`` (``--json``) parameter that returns its result as a dict:
    with ``--json``, human output goes to stderr and the dict is printed as one JSON object on stdout."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        enabled = bool(kwargs.get("json_mode"))
        with json_output(enabled):
            result = fn(*args, **kwargs)
        if enabled:
            emit_json(result or {})

    return wrapper
