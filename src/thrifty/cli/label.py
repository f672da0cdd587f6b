"""``thrifty label``: label a whole corpus at a target agreement with the teacher (see docs/label.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .app import app, console, err_console, friendly
from .core import ApiKeyEnv, BaseUrl, IdCol, Labels, PriceIn, PriceOut, Prices, TeacherOpt, TextCol, _load_task, _teacher_columns, build_teacher


def _say(line: str) -> None:
    """The job's progress lines are plain text: student specs' [key=value] must not be read as markup."""
    console.print(escape(line))


@app.command("label")
@friendly
def label_cmd(
    ctx: typer.Context,
    corpus: Path = typer.Argument(..., help="Documents to label: .csv, .jsonl or .parquet."),
    labels: Optional[str] = Labels,
    teacher: str = TeacherOpt,
    target_agreement: float = typer.Option(0.95, "--target-agreement", "-a", help="Agreement with the teacher to guarantee (with probability 1 - delta)."),
    out: Path = typer.Option(Path("labelled.parquet"), "--out", "-o", help="Labels: .parquet, .csv or .jsonl. Ledger, model and summary go to OUT.thrifty/."),
    max_dollars: Optional[float] = typer.Option(None, "--max-dollars", help="Never spend more than this on the teacher."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Pay only for the audit, then print the projected labels, escalations and dollars."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed or stopped job in OUT.thrifty/ (nothing is paid twice)."),
    student: str = typer.Option("auto", "--student", help="FEATURES-CLASSIFIER; auto = mpnet-lr with the mpnet extra, else minilm-lr with the embed extra, else tfidf-lr."),
    strategy: str = typer.Option("mraru", "--strategy", "-s", help="How training labels are chosen (random, margin, mraru, ...)."),
    batch: int = typer.Option(50, "--batch", help="Training labels bought per round."),
    seed_size: int = typer.Option(50, "--seed-size", help="Random training labels before the first round."),
    audit_size: Optional[int] = typer.Option(None, "--audit-size", help="Audit sample (default 5% of the corpus, 100..400)."),
    val_size: Optional[int] = typer.Option(None, "--val-size", help="Validation sample for the threshold (default 5%, 200..1000; growing past 20,000 documents to 5,000)."),
    max_train_labels: Optional[int] = typer.Option(None, "--max-train-labels", help="Never buy more training labels than this (default 1,000; growing past 20,000 documents to 5,000)."),
    patience: int = typer.Option(4, "--patience", help="Stop buying after this many batches that did not lower the projected cost."),
    delta: float = typer.Option(0.1, "--delta", help="The target may be missed with probability at most delta."),
    soft: bool = typer.Option(False, "--soft/--hard", help="Train on the teacher's distributions where it gives them."),
    self_train: Optional[float] = typer.Option(None, "--self-train", help="Also train on unlabelled documents the student labels with at least this confidence."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    pool_size: Optional[int] = typer.Option(None, "--pool-size", help="Documents the student selects from and trains on, besides audit and validation (default 20,000); the rest only pass through the cascade."),
    fast_student: str = typer.Option("auto", "--fast-student", help="Student in front of --student for documents outside the pool, distilled on its probabilities (auto: tfidf-lr; none: no fast tier)."),
    fast_tolerance: float = typer.Option(0.2, "--fast-tolerance", help="The fast tier keeps what, out of fold over the pool, disagrees with --student on at most this x (1 - target) (90% upper bound)."),
    ensemble: bool = typer.Option(True, "--ensemble/--no-ensemble", help="Final student: a log-linear pool of the installed students + kNN, weighted out of fold on the training labels (docs/label.md)."),
    finetune: Optional[bool] = typer.Option(None, "--finetune/--no-finetune", help="Also fine-tune all-mpnet-base-v2 on the training labels (mpnet + transformer extras; CPU minutes to an hour), pool it with the frozen student and keep the pool if its guaranteed threshold escalates less (docs/label.md). Default: on from 100,000 documents when the extras are installed. A finished job can be resumed with --finetune or --no-finetune (with neither it keeps what it decided)."),
    engine: str = typer.Option("local", "--engine", help="local, or ray: documents outside the pool go through the student tiers as a Ray Data stage."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster for --engine ray (default: a running one, else a new local one)."),
    text_col: str = TextCol,
    id_col: Optional[str] = IdCol,
    base_url: Optional[str] = BaseUrl,
    api_key_env: str = ApiKeyEnv,
    prices: Optional[Path] = Prices,
    price_in: Optional[float] = PriceIn,
    price_out: Optional[float] = PriceOut,
    from_job: Optional[Path] = typer.Option(None, "--from-job", help="A finished job's OUT.thrifty: label CORPUS (new documents drawn like that job's corpus) with its students and guaranteed threshold. Nothing is bought but the documents they are unsure of (and --audit-size uniform ones, default 0, to measure the agreement here), through that job's ledger; labels, teacher (rebuilt as the job saved it unless teacher options are given), target and delta are the job's."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary."),
) -> None:
    """Label every document of CORPUS at --target-agreement with the teacher, for a fraction of its cost."""
    from ..corpus import detect_format, read_corpus
    from ..labelling import LabelConfig, LabelJob, write_labels

    detect_format(out)
    if from_job is not None:
        return _from_job(ctx, from_job, corpus, labels, teacher, out, text_col, id_col, base_url, api_key_env, prices,
                         price_in, price_out, quiet)
    task = _load_task(labels, corpus)
    extra = _teacher_columns(corpus) if teacher.startswith("replay") and ":" not in teacher else []
    docs = read_corpus(corpus, text_col=text_col, id_col=id_col, extra_cols=extra)
    tch = build_teacher(teacher, task, docs, base_url, api_key_env, prices, price_in, price_out)
    cfg = LabelConfig(target_agreement=target_agreement, delta=delta, student=student, strategy=strategy, batch=batch,
                      seed_size=seed_size, audit_size=audit_size, val_size=val_size, max_train_labels=max_train_labels,
                      patience=patience, max_dollars=max_dollars, soft=soft, self_train=self_train, seed=seed,
                      pool_size=pool_size, fast_student=fast_student, fast_tolerance=fast_tolerance,
                      ensemble=ensemble, finetune=finetune, engine=engine, ray_address=ray_address)
    work = Path(str(out) + ".thrifty")
    job = LabelJob(task, tch, cfg, work=work, say=None if quiet else _say,
                   meta={"corpus": str(corpus.resolve()), "teacher": teacher, "out": str(out.resolve())})
    result = job.run(docs, dry_run=dry_run, resume=resume)
    if dry_run:
        _print_plan(result.summary)
        return
    write_labels(result, docs, out)
    console.print(summary_table(result.summary))
    console.print(f"[bold green]labelled[/] {len(docs):,} documents -> {out}; summary: {work / 'summary.json'}")


# what `thrifty label --from-job` uses; any other option given with it is refused (it would be silently ignored)
TEACHER_OPTIONS = {"teacher", "base_url", "api_key_env", "prices", "price_in", "price_out"}  # none: the job's teacher
FROM_JOB_OPTIONS = {"corpus", "labels", "out", "dry_run", "text_col", "id_col", "quiet", "from_job", "target_agreement",
                    "delta", *TEACHER_OPTIONS}


def _from_job(ctx: typer.Context, job_dir: Path, corpus: Path, labels: Optional[str], teacher: str, out: Path,
              text_col: str, id_col: Optional[str], base_url: Optional[str], api_key_env: str, prices: Optional[Path],
              price_in: Optional[float], price_out: Optional[float], quiet: bool) -> None:
    """``thrifty label NEW --from-job JOB.thrifty``: see :mod:`thrifty.labelling.reuse`."""
    from ..corpus import read_corpus
    from ..errors import ThriftyError
    from ..labelling import write_labels
    from ..labelling.reuse import REUSE_OPTIONS, job_task, job_teacher, label_with_job, read_job

    # by name: typer may bring its own copy of click's ParameterSource
    given = {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") != "DEFAULT"}
    task = job_task(job_dir, [f"--{k.replace('_', '-')}" for k in sorted(given - FROM_JOB_OPTIONS - REUSE_OPTIONS)],
                    _load_task(labels, corpus).labels if "labels" in given else None)
    job, js = read_job(job_dir)
    for k, v in (("target_agreement", ctx.params["target_agreement"]), ("delta", ctx.params["delta"])):
        if k in given and float(v) != float(js[k]):
            raise ThriftyError(f"The job in {job_dir} guarantees --{k.replace('_', '-')} {js[k]}, not {v}: its threshold "
                               "was chosen for that. Label these documents with a new job for another target.")
    recipe = job.get("teacher_recipe") or {}
    rebuild = not given & TEACHER_OPTIONS and recipe.get("spec")  # the job's own teacher, as it was built
    spec = recipe["spec"] if rebuild else teacher if "teacher" in given else (job.get("meta") or {}).get("teacher", teacher)
    extra = _teacher_columns(corpus) if spec.startswith("replay") and ":" not in spec else []
    docs = read_corpus(corpus, text_col=text_col, id_col=id_col, extra_cols=extra)
    tch = (job_teacher(job_dir, docs) if rebuild else
           build_teacher(spec, task, docs, base_url, api_key_env, prices, price_in, price_out))
    p = ctx.params
    res = label_with_job(job_dir, docs, tch, audit_size=p["audit_size"] or 0, max_dollars=p["max_dollars"],
                         dry_run=p["dry_run"], seed=p["seed"], engine=p["engine"], ray_address=p["ray_address"],
                         say=None if quiet else _say)
    s = res.summary
    if quiet and s["drift_warning"]:  # said already unless --quiet; a warning is never quiet
        err_console.print(f"[bold yellow]{escape(s['drift_warning'])}[/]")
    if p["dry_run"]:
        dr = s["dry_run"]
        console.print(f"dry run: {s['teacher_calls']['escalations']:,} of {s['n_docs']:,} documents would go to the "
                      f"teacher ({100 * s['escalation_rate']:.1f}%), {dr['new_calls']:,} not in the ledger yet: about "
                      f"${dr['dollars']:,.4f} (teacher on everything ${s['dollars']['teacher_everything']:,.4f}). "
                      "Nothing was paid or written.")
        return
    write_labels(res, docs, out)
    summary_path = Path(str(out) + ".summary.json")
    summary_path.write_text(json.dumps(s, indent=2, default=str), encoding="utf-8")
    console.print(reuse_table(s))
    console.print(f"[bold green]labelled[/] {len(docs):,} documents -> {out}; summary: {summary_path}")


def reuse_table(s: dict[str, Any]) -> Table:
    """What `label --from-job` did: calls, dollars vs the teacher on everything, the agreement it can vouch for."""
    t = Table(title=f"thrifty label --from-job: {s['n_docs']:,} documents, target agreement {s['target_agreement']}")
    t.add_column("")
    t.add_column("value", justify="right")
    c, d = s["teacher_calls"], s["dollars"]
    t.add_row("teacher calls: escalations / audit", f"{c['escalations']:,} / {c['audit']:,}")
    t.add_row("teacher calls: total", f"{c['total']:,} ({c['pct_of_corpus']:.1f}% of the documents; "
              f"{sum(s['paid_this_invocation'].values()):,} paid now)")
    pct = f" ({d['pct_of_teacher_everything']:.1f}%)" if d["pct_of_teacher_everything"] is not None else ""
    t.add_row("dollars spent / teacher on everything", f"${d['spent']:,.4f} / ${d['teacher_everything']:,.4f}{pct}")
    t.add_row("escalation rate: here / the job's audit", f"{100 * s['escalation_rate']:.1f}% / "
              f"{100 * s['job_escalation_rate_new_docs']:.1f}%")
    a = s["estimated_agreement"]["new_docs_audit"]
    if a and a["agreement"] is not None:
        t.add_row("agreement with the teacher (audit here, 95% CI)",
                  f"{a['agreement']:.3f} ({a['ci95'][0]:.3f}-{a['ci95'][1]:.3f}) on {a['n']} docs")
    _doubt_row(t, s)
    t.add_row("guarantee", s["guarantee"])
    for name, tier in s["tiers"].items():
        t.add_row(f"{name} tier" + (f" ({escape(tier['name'])})" if "name" in tier else ""),
                  f"{tier['docs']:,} docs, {tier['seconds']:.1f} s")
    t.add_row("wall time", f"{s['wall_s']:.1f} s")
    return t


def _print_plan(s: dict[str, Any]) -> None:
    p = s["plan"]
    t = Table(title=f"plan (dry run): {s['n_docs']:,} documents, student {s['student']}")
    for c in ("", "this corpus", "at 10^6 documents"):
        t.add_column(c, justify="right")
    c, m = p["corpus"], p["at_1e6"]

    def rng(d: dict[str, Any], k: str, money: bool = False) -> str:
        f = (lambda v: f"${v:,.2f}") if money else (lambda v: f"{v:,.0f}")
        return f"{f(d[k])} ({f(d[k + '_ci95'][0])}-{f(d[k + '_ci95'][1])})"

    t.add_row("audit + validation labels", f"{p['audit'] + p['validation']:,}", f"{sum(p['samples_at_1e6']):,}")
    t.add_row("training labels (at most)", f"{p['training_at_most']:,}", f"{p['training_at_most_at_1e6']:,}")
    t.add_row("escalations (95% CI)", rng(c, "escalations"), rng(m, "escalations"))
    t.add_row("teacher calls (95% CI)", rng(c, "calls"), rng(m, "calls"))
    t.add_row("dollars (95% CI)", rng(c, "dollars", True), rng(m, "dollars", True))
    t.add_row("teacher on everything", f"${c['teacher_everything_dollars']:,.2f}", f"${m['teacher_everything_dollars']:,.2f}")
    console.print(t)
    console.print(f"Escalation rate {100 * p['escalation_rate']:.1f}% (95% CI {100 * p['escalation_rate_ci95'][0]:.1f}-"
                  f"{100 * p['escalation_rate_ci95'][1]:.1f}%) from a pilot student cross-fitted on the audit "
                  f"(~{p['pilot_train_labels']} labels): an upper estimate, since the real student trains on more. "
                  f"Spent ${s['dollars_spent']:.4f} on the audit; run without --dry-run (add --resume) to continue.")
    if p.get("teacher_doubt"):
        d = p["teacher_doubt"]
        pairs = ", ".join(" / ".join(x["labels"]) for x in d["unsure_between"][:2])
        console.print(f"The teacher answered {100 * d['unsure_share']:.0f}% of the audit with < {d['doubt_below']:g} "
                      "confidence" + (f" (most often between {escape(pairs)})" if pairs else "") + ": the documents "
                      "where it hesitates are those a cascade most often has to send back to it (docs/label.md, "
                      "\"Where the cost goes\").")


def _doubt_row(t: Table, s: dict[str, Any]) -> None:
    """Where the student's disagreements with the teacher fall on the audit (when the teacher states a confidence)."""
    if s.get("teacher_doubt"):
        from ..labelling.doubt import doubt_line

        t.add_row("student disagrees with the teacher (audit)", escape(doubt_line(s["teacher_doubt"])))


def summary_table(s: dict[str, Any]) -> Table:
    """What a user came for: calls by phase, dollars vs asking the teacher about everything, agreement."""
    t = Table(title=f"thrifty label: {s['n_docs']:,} documents at target agreement {s['target_agreement']}")
    t.add_column("")
    t.add_column("value", justify="right")
    c = s["teacher_calls"]
    for k in ("audit", "validation", "training", "escalations"):
        t.add_row(f"teacher calls: {k}", f"{c[k]:,}")
    t.add_row("teacher calls: total", f"{c['total']:,} ({c['pct_of_corpus']:.1f}% of the corpus)")
    d = s["dollars"]
    pct = f" ({d['pct_of_teacher_everything']:.1f}%)" if d["pct_of_teacher_everything"] is not None else ""
    t.add_row("dollars spent / teacher on everything", f"${d['spent']:,.4f} / ${d['teacher_everything']:,.4f}{pct}")
    e = s["estimated_agreement"]
    a, ca = e["cascade_on_audit"], e["corpus"]
    if a["agreement"] is not None:
        t.add_row("agreement with the teacher (audit, 95% CI)",
                  f"{a['agreement']:.3f} ({a['ci95'][0]:.3f}-{a['ci95'][1]:.3f}) on {a['n']} docs")
        t.add_row("  over the corpus, labelled docs counted", f"{ca['agreement']:.3f} ({ca['ci95'][0]:.3f}-{ca['ci95'][1]:.3f})")
    _doubt_row(t, s)
    th = s["threshold"]
    t.add_row("threshold (Learn-then-Test)", f"{th['threshold']:.4f}: agreement >= {th['target_agreement']} "
              f"w.p. {1 - th['delta']:.2f} ({th['n_cal']} validation rows)")
    p6 = s["projection"]["at_1e6"]
    t.add_row("escalation rate / cost at 10^6 docs", f"{100 * s['escalation_rate']:.1f}% / "
              f"{100 * p6['fraction_of_teacher_everything']:.1f}% of teacher-everything")
    ts, tt = s["tiers"]["student"], s["tiers"]["teacher"]
    if "fast" in s["tiers"]:
        tf = s["tiers"]["fast"]
        t.add_row(f"fast tier ({escape(tf['name'])})", f"{tf['docs']:,} docs answered of {tf['docs_read']:,} read" +
                  (f", {tf['predict_docs_per_s']:,.0f} docs/s" if tf["predict_docs_per_s"] else ""))
    t.add_row(f"student tier ({escape(ts['name'])})", f"{ts['docs']:,} docs" + (f", {ts['docs_per_s']:,.0f} docs/s" if ts["docs_per_s"] else ""))
    t.add_row("teacher tier", f"{tt['docs']:,} docs" + (f", {tt['docs_per_s']:,.1f} docs/s" if tt["docs_per_s"] else ""))
    t.add_row("stopped buying labels", s["stop_reason"])
    t.add_row("wall time", f"{s['wall_s']:.1f} s")
    return t


__all__ = ["label_cmd", "summary_table", "reuse_table"]


@app.command("demo-label")
@friendly
def demo_label(
    teacher: str = typer.Option("local", "--teacher", "-t", help="Teacher spec (default: the local Qwen 1.5B)."),
    target_agreement: float = typer.Option(0.9, "--target-agreement", "-a"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Labels file (default: in a new temporary folder)."),
    base_url: Optional[str] = BaseUrl,
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed demo with the same --out."),
) -> None:
    """`thrifty label` on the shipped Banking77 subset (738 messages, 6 intents) with the local teacher:
    labels on every message, agreement with its interval, teacher calls and time vs asking the teacher about all."""
    import tempfile
    from importlib import resources

    from ..corpus import read_corpus
    from ..labelling import LabelConfig, LabelJob, write_labels
    from ..task import Task
    from ..teachers import make_teacher

    data = resources.files("thrifty").joinpath("data", "banking77_demo")
    with resources.as_file(data) as d:
        task = Task.load(d / "labels.yaml")
        docs = read_corpus(d / "pool.csv", id_col="id", gold_col="label")
    out = out or Path(tempfile.mkdtemp(prefix="thrifty-demo-label-")) / "labelled.csv"
    console.print(f"[bold]demo[/] label {len(docs)} banking messages ({task.n_labels} intents) at agreement "
                  f">= {target_agreement} with {teacher}")
    tch = make_teacher(teacher, task, docs, base_url=base_url)
    cfg = LabelConfig(target_agreement=target_agreement, audit_size=60, val_size=150, seed_size=30, batch=30,
                      max_train_labels=240, seed=seed)
    job = LabelJob(task, tch, cfg, work=Path(str(out) + ".thrifty"), say=_say)
    res = job.run(docs, resume=resume)
    write_labels(res, docs, out)
    s = res.summary
    console.print(summary_table(s))
    gold = [g for g in docs.gold or []]
    acc = sum(lab == g for lab, g in zip(res.labels, gold) if g) / max(1, sum(1 for g in gold if g))
    if s["teacher_everything_s_est"]:
        console.print(f"time {s['wall_s']:.0f}s vs ~{s['teacher_everything_s_est']:.0f}s to ask the teacher about all "
                      f"{s['n_docs']} messages ({s['teacher_s_per_call']:.2f}s a call)")
    console.print(f"[bold green]labelled {len(docs)} messages[/] -> {out} (gold accuracy of the labels {acc:.3f})")
