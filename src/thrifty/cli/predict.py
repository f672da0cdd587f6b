"""``thrifty predict``: classify a whole corpus with a run's student (optionally cascading to the teacher)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import ThriftyError
from .app import app, console, err_console, friendly
from .core import IdCol, PriceIn, PriceOut, Prices, TextCol
from .scripting import JsonFlag, json_command


@app.command()
@friendly
@json_command
def predict(
    run: Path = typer.Argument(..., help="Run directory made by `thrifty distill` (or a model directory)."),
    corpus: Path = typer.Argument(..., help="Texts to classify: .parquet, .csv or .jsonl, any size."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .parquet/.csv/.jsonl (a Parquet directory with --engine ray)."),
    text_col: str = TextCol,
    id_col: Optional[str] = IdCol,
    batch_size: int = typer.Option(8192, "--batch-size", help="Rows per batch (memory grows with it, not with the corpus)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Worker processes (default: CPU count, max 8; 1 = in process); with --engine ray, actors (default: one per cluster CPU)."),
    probs: bool = typer.Option(False, "--probs", help="Also write the full distribution (one p_<label> column per label)."),
    engine: str = typer.Option("local", "--engine", help="local (processes on this machine) | ray (Ray Data)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local Ray)."),
    cascade: bool = typer.Option(False, "--cascade", help="Send low-confidence documents to the run's teacher (via its ledger)."),
    target_agreement: Optional[float] = typer.Option(None, "--target-agreement", help="Cascade: expected agreement with the teacher to reach (e.g. 0.98)."),
    max_escalations: Optional[int] = typer.Option(None, "--max-escalations", help="Cascade: at most this many documents go to the teacher."),
    guarantee: str = typer.Option("ltt", "--guarantee", help="Cascade: ltt = agreement >= --target-agreement with probability 1 - --delta (Learn-then-Test); wilson = each threshold's 95% lower bound meets it; estimate = the point estimate does (no guarantee)."),
    delta: float = typer.Option(0.1, "--delta", help="Cascade, --guarantee ltt: the target may be missed with probability at most this."),
    conservative: bool = typer.Option(False, "--conservative", help="Cascade: same as --guarantee wilson (kept for old scripts)."),
    max_dollars: Optional[float] = typer.Option(None, "--max-dollars", help="Cascade: stop escalating once this many dollars are spent (within one batch); the rest keep the student label."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Cascade: print the expected escalations and dollars (95% interval), pay nothing, write nothing."),
    restart: bool = typer.Option(False, "--restart", help="Discard the parts of an unfinished earlier run instead of resuming."),
    summary_json: Optional[Path] = typer.Option(None, "--summary-json", help="Also write the run summary as JSON."),
    prices: Optional[Path] = Prices,
    price_in: Optional[float] = PriceIn,
    price_out: Optional[float] = PriceOut,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_mode: bool = JsonFlag,
) -> dict:
    """Label every document of CORPUS with the student of RUN, streaming, in parallel, resumably."""
    if engine not in ("local", "ray"):
        raise ThriftyError(f"Unknown --engine {engine!r}: use local or ray.")
    if (target_agreement is not None or max_escalations is not None or max_dollars is not None or dry_run) and not cascade:
        raise ThriftyError("--target-agreement, --max-escalations, --max-dollars and --dry-run need --cascade.")
    if engine == "ray":
        if cascade:
            raise ThriftyError("--cascade runs with --engine local only (teacher calls go through one ledger file).")
        from ..engines.ray import predict_ray

        summary = predict_ray(run, corpus, out, text_col=text_col, id_col=id_col, batch_size=batch_size,
                              probs=probs, address=address, concurrency=workers)
    else:
        from ..predict import predict_file

        casc = plan = None
        if cascade:
            casc, plan = _make_cascade(run, corpus, text_col, target_agreement, max_escalations,
                                       "wilson" if conservative else guarantee, delta,
                                       {"prices": prices, "price_in": price_in, "price_out": price_out}, max_dollars)
            if dry_run:
                return _dry_run(casc, plan, corpus, text_col, max_escalations, max_dollars)
        try:
            summary = predict_file(run, corpus, out, text_col=text_col, id_col=id_col, batch_size=batch_size,
                                   workers=workers, probs=probs, cascade=casc, cascade_plan=plan, restart=restart,
                                   progress=not quiet)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted.[/] Finished batches (and paid labels) are kept: "
                              "run the same command again to resume.")
            raise SystemExit(130)
        if casc is not None:
            casc.cached.ledger.close()
    msg = (f"[bold green]done[/] {summary.rows:,} rows in {summary.seconds:.1f}s "
           f"({summary.docs_per_s:,.0f} docs/s, {summary.workers} workers, engine {summary.engine}) -> {summary.out}")
    if summary.resumed_batches:
        msg += f"; resumed: {summary.resumed_batches} of {summary.batches} batches were already done"
    console.print(msg)
    if summary.cascade is not None:
        console.print(f"cascade: {summary.escalated:,} documents sent to the teacher "
                      f"({summary.escalated / max(summary.rows, 1):.3f} of the corpus), {summary.teacher_requests:,} paid "
                      f"now (the rest from the ledger), {summary.abstained:,} abstentions kept the student label"
                      + (f", {summary.capped:,} left to the student by --max-escalations" if summary.capped else "")
                      + f"; ${summary.dollars:.4f} paid for escalations")
        if summary.capped_by_dollars:
            console.print(f"[yellow]--max-dollars {max_dollars:g} reached:[/] {summary.capped_by_dollars:,} more documents "
                          "below the threshold kept the student label")
    if summary_json:
        summary_json.write_text(json.dumps(summary.as_dict(), indent=2, default=str), encoding="utf-8")
    return summary.as_dict()


def _dry_run(casc, plan, corpus: Path, text_col: str, max_esc: Optional[int], max_dollars: Optional[float]) -> dict:
    """What the cascade is expected to escalate and cost on CORPUS, before paying anything."""
    from ..predict import count_rows

    casc.cached.ledger.close()
    f = plan.forecast(count_rows(corpus, text_col))
    lo, hi = f["escalations_ci"]
    console.print(f"dry run: {f['rows']:,} documents; expected escalations {f['escalations']:,} (95% CI {lo:,}-{hi:,})"
                  + (f", at most {max_esc:,} (--max-escalations)" if max_esc is not None else ""))
    if f["dollars"] is None:
        err_console.print("[bold yellow]warning:[/] no price is known for the teacher: dollars cannot be estimated; "
                          "give --price-in/--price-out or --prices.")
    else:
        dlo, dhi = f["dollars_ci"]
        console.print(f"dry run: expected dollars ${f['dollars']:.4f} (95% CI ${dlo:.4f}-${dhi:.4f}; documents already "
                      "in the ledger cost nothing)" + (f", capped at ${max_dollars:g} (--max-dollars)" if max_dollars is not None else ""))
    return {"dry_run": True, "plan": plan.as_dict(), "forecast": f, "max_escalations": max_esc, "max_dollars": max_dollars}


def _make_cascade(run: Path, corpus: Path, text_col: str, target: Optional[float], max_esc: Optional[int],
                  guarantee: str, delta: float, price_kw: dict, max_dollars: Optional[float] = None):
    """Threshold from the run's validation slice, teacher + ledger from the run's config."""
    from ..cascade import Cascade, open_run_teacher, plan_from_run
    from ..predict import count_rows
    from ..run import load_model

    if target is None and max_esc is None:
        raise ThriftyError("--cascade needs --target-agreement (e.g. 0.98) and/or --max-escalations N.")
    if max_esc is not None and max_esc < 0:
        raise ThriftyError("--max-escalations must be 0 or more.")
    model = load_model(run)
    cached, pool = open_run_teacher(run, **price_kw)
    rate = None if max_esc is None else max_esc / max(count_rows(corpus, text_col), 1)
    plan = plan_from_run(run, model, cached, pool, target, rate, guarantee=guarantee, delta=delta)
    for line in plan.lines():
        console.print(f"cascade: {line}")
    return Cascade(cached, model.labels, plan.threshold, max_esc, max_dollars, plan.cost_per_label), plan
