"""The benchmark harness: strategies x students x teachers x datasets x seeds, side by side with small-text.

>>> from thrifty.bench import GridSpec, run_benchmark                      # doctest: +SKIP
>>> run_benchmark(GridSpec(datasets=["trec6"], seeds=3), out_dir="benchmarks/results")  # doctest: +SKIP

``thrifty bench`` and ``benchmarks/run_all.py`` call :func:`run_benchmark`.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any, Sequence

from ..errors import ThriftyError

# The harness is the optional ``bench`` extra (small-text, its peer library, stays optional within it):
# without it, say so in one line before any run is started, not as a crash after the grid.
_MISSING = [m for m in ("pandas", "matplotlib") if importlib.util.find_spec(m) is None]
if _MISSING:
    raise ThriftyError(f"thrifty bench needs the bench extra ({', '.join(_MISSING)} not installed): "
                       "pip install 'thrifty[bench]'.")

import pandas as pd  # noqa: E402

from .datasets import BenchData, TeacherSetup, dataset_names, load_dataset, make_bench_teacher, shared_root
from .grid import GridSpec, Log, default_strategies, parse_strategy, run_grid
from .metrics import summarise
from .peers import SmallTextStrategy, register_peers
from .teachers import NoisyTeacher, OracleTeacher

# word TF-IDF capped at 10k terms: LR fits ~4x faster than the full vocabulary (L-BFGS cost grows with
# features x classes) for ~1 point of accuracy; measured on ag_news, documented in docs/bench.md
BENCH_STUDENT = "tfidf[char=false,max_features=10000]-lr"


def default_spec() -> GridSpec:
    """The committed grid: 5 datasets, gold and recorded-LLM teachers, every strategy, the default
    student and TF-IDF, 3 seeds, 1,000 labels in batches of 100. The TF-IDF half took ~1 h on 2
    shared cores (banking77, 77 classes, costs as much as the other five together: run it with
    ``--datasets banking77``); ``benchmarks/selection_grid.py`` is the smaller issue-17 grid."""
    # small-text's EmbeddingKMeans re-clusters the pool every round (seconds per round): run it on demand
    strategies = [s for s in default_strategies() if s != "st_kmeans"]
    extra = [s for s in ("mraru[exponent=1]", "mraru[exponent=3]") if "mraru" in strategies]
    from ..students import default_student

    # the product's default student first (minilm-lr with the embed extra), TF-IDF as the secondary row
    students = list(dict.fromkeys([default_student(), BENCH_STUDENT]))
    return GridSpec(
        datasets=["ag_news", "trec6", "gwsd_gpt4o", "mr_chatgpt", "sst2"],
        strategies=strategies + extra, students=students, teachers=["oracle", "recorded"],
        seeds=3, budget=1000, batch=100, seed_size=100,
    )


def smoke_spec() -> GridSpec:
    """A CI-sized grid that still touches every code path (simulated + recorded teachers, the peer)."""
    wanted = ["random", "margin", "mraru", "diversity", "st_breaking_ties"]
    return GridSpec(
        datasets=["trec6", "gwsd_gpt4o"], strategies=[s for s in wanted if s in default_strategies()],
        students=[BENCH_STUDENT], teachers=["oracle", "recorded"], seeds=1, budget=200, batch=50, seed_size=50,
        max_pool=1200, max_test=300,
    )


def run_benchmark(
    spec: GridSpec,
    out_dir: str | Path = "benchmarks/results",
    md: str | Path | None = "BENCHMARKS.md",
    cache_dir: str | Path = ".bench-cache",
    report_only: bool = False,
    fresh: bool = False,
    command: str = "thrifty bench",
    log: Log = print,
) -> pd.DataFrame:
    """Run the grid (cached runs are reused), write ``rounds.csv``, ``summary.csv``, PNG plots
    and, if ``md`` is given, the Markdown report. Returns the summary table."""
    from .plots import plot_curves
    from .report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rounds = run_grid(spec, cache_dir=cache_dir, log=log, fresh=fresh, run_missing=not report_only)
    grid_s = time.perf_counter() - t0
    rounds.to_csv(out / "rounds.csv", index=False)
    plots = plot_curves(rounds, out / "plots")
    scale_csv = out / "scale.csv"
    scale = pd.read_csv(scale_csv) if scale_csv.exists() else None
    if md is None:
        return summarise(rounds)
    return write_report(rounds, md, out, spec.to_dict(), command, scale=scale, plots=plots,
                        grid_seconds=None if report_only else grid_s)


def run_scale(
    out_dir: str | Path = "benchmarks/results",
    dataset: str = "trec6",
    sizes: Sequence[int] = (10_000, 100_000, 1_000_000),
    strategies: Sequence[str] = ("entropy", "mraru", "st_breaking_ties"),
    log: Log = print,
    **kw: Any,
) -> pd.DataFrame:
    """Run the scale probe and write ``scale.csv`` + ``scale.png``."""
    from threadpoolctl import threadpool_limits

    from .plots import plot_scale
    from .scale import scale_probe

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with threadpool_limits(limits=1):
        df = scale_probe(dataset, sizes=sizes, strategies=strategies, log=log, **kw)
    df.to_csv(out / "scale.csv", index=False)
    plot_scale(df, out)
    return df


__all__ = [
    "GridSpec", "run_grid", "parse_strategy", "run_benchmark", "run_scale", "default_spec", "smoke_spec", "default_strategies",
    "BenchData", "TeacherSetup", "load_dataset", "make_bench_teacher", "dataset_names", "shared_root",
    "OracleTeacher", "NoisyTeacher", "SmallTextStrategy", "register_peers", "summarise", "BENCH_STUDENT",
]
