"""``thrifty export``: take a run's student out of thrifty (ONNX, model2vec, Hugging Face folder)."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app, console, err_console, friendly


@app.command("export")
@friendly
def export(
    run: Path = typer.Argument(..., help="Run directory made by `thrifty distill`, a `thrifty label` job "
                               "(OUT.thrifty), or a model directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write (must be empty or absent, unless --force)."),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx | model2vec (static students) | hf (ONNX + model card)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    single: bool = typer.Option(False, "--single", help="On a `thrifty label` job: export its single student "
                                "(model/) instead of its final one (the pool in ensemble/, what `predict` uses)."),
) -> None:
    """Export RUN's student: a portable model, its tokenizer, labels and a runnable example.py. On a `thrifty
    label` job (OUT.thrifty), --format onnx exports its final student, the pool of its students."""
    from rich.markup import escape

    from ..export import export_run

    res = export_run(run, out, format=format, force=force, single=single)
    console.print(f"[bold green]exported[/] {format} -> {res.out}: {escape(', '.join(res.files))}", soft_wrap=True)
    if res.note:
        err_console.print(f"[yellow]note:[/] {escape(res.note)}", soft_wrap=True)
