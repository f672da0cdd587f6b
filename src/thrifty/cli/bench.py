"""``thrifty bench``: the benchmark grid, the scale probe and BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, console, friendly

SMOKE_DIR = Path(".bench-cache/smoke")


def _split(text: Optional[str]) -> Optional[list[str]]:
    """Comma-separated list; commas inside [...] (strategy parameters) are kept."""
    if text is None:
        return None
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [s for s in out if s]


def _test_files(datasets: list[str], tests: Optional[list[str]]) -> dict[str, str]:
    """``--test`` files paired, in order, with the datasets that are files."""
    from ..bench.datasets import split_name
    from ..errors import ThriftyError

    if not tests:
        return {}
    files = [d for d in datasets if Path(split_name(d)[1]).is_file()]
    if len(files) != len(tests):
        raise ThriftyError(
            f"--test gives {len(tests)} file(s) for {len(files)} file dataset(s) {files}: give one test file per "
            "file dataset, in --datasets order (shared datasets use their own test.csv)."
        )
    return dict(zip(files, tests))


@app.command()
@friendly
def bench(
    datasets: Optional[str] = typer.Option(None, "--datasets", "-d", help="Shared dataset names and/or CSV/Parquet files with a gold column, comma-separated ('all' = every shared set)."),
    strategies: Optional[str] = typer.Option(None, "--strategies", "-s", help="e.g. random,margin,mraru[exponent=1],st_breaking_ties (default: every registered one)."),
    students: Optional[str] = typer.Option(None, "--students", help="FEATURES[params]-CLASSIFIER, e.g. tfidf[char=false]-lr."),
    teachers: Optional[str] = typer.Option(None, "--teachers", "-t", help="oracle, noisy:<rate>, recorded, or a live teacher spec (openai:MODEL, local...)."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Seeds per configuration."),
    budget: Optional[int] = typer.Option(None, "--budget", "-b", help="Teacher labels per run."),
    budget_per_class: Optional[int] = typer.Option(None, "--budget-per-class", help="Teacher labels per run per class of the dataset (replaces --budget), e.g. 40."),
    test: Optional[str] = typer.Option(None, "--test", help="Gold test file of each file dataset, in --datasets order, comma-separated (default: a seeded 20% hold-out of the file)."),
    gold_col: str = typer.Option("label", "--gold-col", help="Gold label column of file datasets (and their --test files)."),
    text_col: str = typer.Option("text", "--text-col", help="Text column of file datasets."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Labels per round."),
    seed_size: Optional[int] = typer.Option(None, "--seed-size", help="Random labels before the first round."),
    max_pool: Optional[int] = typer.Option(None, "--max-pool", help="Subsample each pool to this many rows."),
    max_test: Optional[int] = typer.Option(None, "--max-test", help="Subsample each test split to this many rows."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for rounds.csv, summary.csv, plots (default benchmarks/results; --smoke: .bench-cache/smoke/results)."),
    md: Optional[Path] = typer.Option(None, "--md", help="Markdown report to (re)write (default BENCHMARKS.md; --smoke: .bench-cache/smoke/BENCHMARKS.md)."),
    cache: Path = typer.Option(Path(".bench-cache"), "--cache", help="Per-run cache (resume, regenerate)."),
    smoke: bool = typer.Option(False, "--smoke", help="The CI-sized grid (~1 minute)."),
    scale: bool = typer.Option(False, "--scale", help="Run the scale probe (seconds per round vs pool size) instead of the grid."),
    scale_sizes: str = typer.Option("10000,100000,1000000", "--scale-sizes", help="Pool sizes for --scale."),
    scale_dataset: str = typer.Option("trec6", "--scale-dataset", help="Dataset resampled for --scale."),
    report_only: bool = typer.Option(False, "--report-only", help="Only rebuild the report from cached runs."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore cached runs and run everything again."),
) -> None:
    """Benchmark selection strategies (and small-text's) side by side; write BENCHMARKS.md."""
    from ..bench import dataset_names, default_spec, run_benchmark, run_scale, smoke_spec

    # a smoke run never overwrites the committed results
    out = out or (SMOKE_DIR / "results" if smoke else Path("benchmarks/results"))
    md = md or (SMOKE_DIR / "BENCHMARKS.md" if smoke else Path("BENCHMARKS.md"))
    log = lambda msg: console.print(msg, highlight=False, markup=False)  # noqa: E731
    if scale:
        strat = _split(strategies) or ["entropy", "mraru", "st_breaking_ties"]
        df = run_scale(out, dataset=scale_dataset, sizes=[int(s) for s in scale_sizes.split(",")], strategies=strat, log=log)
        console.print(df.to_string(index=False))
        return
    spec = smoke_spec() if smoke else default_spec()
    names = _split(datasets)
    if names == ["all"]:
        names = dataset_names()
    for field, value in (("datasets", names), ("strategies", _split(strategies)), ("students", _split(students)),
                         ("teachers", _split(teachers)), ("seeds", seeds), ("budget", budget), ("batch", batch),
                         ("seed_size", seed_size), ("max_pool", max_pool), ("max_test", max_test),
                         ("budget_per_class", budget_per_class)):
        if value is not None:
            setattr(spec, field, value)
    spec.gold_col, spec.text_col = gold_col, text_col
    spec.test = _test_files(spec.datasets, _split(test))
    command = "thrifty bench " + ("--smoke" if smoke else "") + (" --report-only" if report_only else "")
    summary = run_benchmark(spec, out_dir=out, md=md, cache_dir=cache, report_only=report_only, fresh=fresh,
                            command=command.strip(), log=log)
    console.print(f"[bold green]done[/]: {len(summary)} configurations; report {md}, results in {out}")
    from ..bench.report import PAGE

    console.print(f"HTML page (self-contained, opens offline): {out / PAGE}", highlight=False, markup=False, soft_wrap=True)
