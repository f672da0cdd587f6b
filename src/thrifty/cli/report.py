"""Look at a run and fix its labels: report, ledger export/show, audit, import-labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import ThriftyError
from .app import app, console, friendly, ledger_app

RunArg = typer.Argument(..., help="Run directory made by `thrifty distill`.")


@app.command()
@friendly
def report(
    run: Path = RunArg,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file to write (default: RUN/report.html)."),
    open_: bool = typer.Option(False, "--open", help="Open the report in the default browser."),
    cascade_target: float = typer.Option(0.95, "--cascade-target", help="Agreement target whose cascade threshold is marked."),
) -> None:
    """Write one self-contained HTML report of a run (figures inline; opens offline)."""
    from ..report import build_report

    rep = build_report(run, out=out, cascade_target=cascade_target)
    for note in rep.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"[bold green]report[/] {rep.path} ({rep.n_bytes / 1024:,.0f} KiB, {len(rep.figures)} figures, "
                  f"{rep.seconds:.1f}s)")
    if open_:
        import webbrowser

        webbrowser.open(rep.path.resolve().as_uri())


def _answers_table(run: Path):
    import pyarrow as pa

    from ..report import open_run

    rows = [a.__dict__ for a in open_run(run).answers()]
    if not rows:
        raise ThriftyError(f"The ledger of {run} holds no answers for this run.")
    return pa.Table.from_pylist(rows)


@ledger_app.command("export")
@friendly
def ledger_export(
    run: Path = RunArg,
    out: Path = typer.Option(..., "--out", "-o", help="labels.parquet | .csv | .jsonl"),
) -> None:
    """One row per paid answer: text, id, label, distribution, raw answer, parse, cost, tokens, round, purpose."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..corpus import detect_format, write_table

    fmt = detect_format(out)
    table = _answers_table(run)
    if fmt == "csv":  # CSV has no list type: the distribution goes as JSON text
        probs = [None if p is None else json.dumps(p) for p in table.column("probs").to_pylist()]
        table = table.set_column(table.schema.get_field_index("probs"), "probs", pa.array(probs, pa.string()))
    write_table(table, out)
    kinds = pc.value_counts(table.column("purpose")).to_pylist()
    console.print(f"[bold green]exported[/] {table.num_rows:,} answers to {out}: "
                  + ", ".join(f"{k['values']} {k['counts']:,}" for k in kinds))


@ledger_app.command("show")
@friendly
def ledger_show(
    run: Path = RunArg,
    text: Optional[str] = typer.Option(None, "--text", help="The exact text."),
    id_: Optional[str] = typer.Option(None, "--id", help="The document id (corpus id column or row number)."),
) -> None:
    """Everything the ledger knows about one document's answer: label, distribution, raw answer, cost, purpose."""
    from ..report import open_run
    from ..task import text_sha256

    if (text is None) == (id_ is None):
        raise ThriftyError("Give exactly one of --text or --id.")
    view = open_run(run)
    sha = text_sha256(text) if text is not None else None
    found = [a for a in view.answers() if (a.text_sha256 == sha if sha else a.id == id_)]
    if not found:
        raise ThriftyError(f"No answer in {run} for that {'text' if text is not None else 'id'}.")
    for a in found:
        console.print_json(json.dumps(a.__dict__, default=str))


@app.command()
@friendly
def audit(
    run: Path = RunArg,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="CSV to write (default: RUN/audit.csv)."),
    method: str = typer.Option("both", "--method", help="both (student and teacher confidence) | self (student only)."),
    folds: int = typer.Option(5, "--folds", help="Cross-fitting folds."),
    top: int = typer.Option(10, "--top", help="Rows to print."),
) -> None:
    """Rank the teacher's labels by how likely they are wrong; write a CSV a reviewer fills in (correct_label)."""
    import csv

    from ..report.audit import audit_run

    rows = audit_run(run, method=method, n_folds=folds)
    path = out or run / "audit.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows[:top]:
        console.print(f"{r['rank']:>4}  {r['suspicion']:.3f}  teacher {r['teacher_label']!r} vs student "
                      f"{r['student_label']!r}  {str(r['text'])[:80]!r}", soft_wrap=True)
    console.print(f"[bold green]audit[/] {len(rows):,} teacher labels ranked in {path}. Fill in correct_label, then "
                  f"`thrifty import-labels {run} {path}`.")


@app.command("import-labels")
@friendly
def import_labels_cmd(
    run: Path = RunArg,
    corrections: Path = typer.Argument(..., help="CSV with text or id, and correct_label (or label)."),
    reviewer: str = typer.Option("human", "--reviewer", help="Who labelled (stored with each label)."),
) -> None:
    """Store human labels in the run's ledger (the teacher's answers stay); used from the next --resume on."""
    from ..report.audit import import_labels

    n = import_labels(run, corrections, reviewer=reviewer)
    console.print(f"[bold green]stored[/] {n['stored']:,} human labels as {reviewer!r} ({n['skipped']:,} rows without a "
                  f"label skipped). They replace the teacher's answers from `thrifty distill --resume {run}` on.")
