"""The selection grid of issue 17: the product's default student (minilm-lr), every shared dataset,
gold and recorded teachers, random / margin / mraru / auto (and auto with a random seed set) /
small-text's BreakingTies and ClassBalancer, side by side; writes BENCHMARKS-selection.md.

    python benchmarks/selection_grid.py                 # runs what is not cached, then the report
    python benchmarks/selection_grid.py --report-only   # the report from cached runs

Sized for ~40 minutes on 2 shared cores: pools are subsampled (seeded) to 3,000 texts and test
splits to 1,000; the two long-text sets (bbc_news ~380 words, reuters_r8 ~100 words per text,
where MiniLM costs ~10x per text) to 1,000 and 300. The full-pool student is trained on the
same subsample. MiniLM embeddings are cached in THRIFTY_CACHE_DIR and computed once per text.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from thrifty.bench import GridSpec
from thrifty.errors import ThriftyError
from thrifty.bench.grid import run_grid
from thrifty.bench.plots import plot_curves
from thrifty.bench.report import write_report

# auto = coverage seed capped at 5 per class; the variants are its ablations: an uncapped coverage seed
# (100 per class is more than any seed set) and a random seed set
STRATEGIES = ["random", "margin", "mraru", "auto", "auto[coverage_per_class=100]",
              "auto[coverage=0]", "st_breaking_ties", "st_class_balancer"]
COMMON = dict(strategies=STRATEGIES, teachers=["oracle", "recorded"], seeds=3, budget=1000, batch=100, seed_size=100)


def specs(student: str) -> list[GridSpec]:
    return [
        GridSpec(datasets=["trec6", "gwsd_gpt4o", "sst2", "mr_chatgpt", "ag_news", "banking77"], students=[student],
                 max_pool=3000, max_test=1000, **COMMON),
        GridSpec(datasets=["reuters_r8", "bbc_news"], students=[student], max_pool=1000, max_test=300, **COMMON),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="minilm-lr")
    ap.add_argument("--out", default="benchmarks/results/selection")
    ap.add_argument("--md", default="BENCHMARKS-selection.md")
    ap.add_argument("--cache", default=".bench-cache")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    parts = []
    with threadpool_limits(limits=1):
        for s in specs(args.student):
            try:
                parts.append(run_grid(s, cache_dir=args.cache, run_missing=not args.report_only))
            except ThriftyError as e:  # --report-only on a grid not run yet
                print(f"skipping {s.datasets}: {e}")
    rounds = pd.concat(parts, ignore_index=True)
    rounds.to_csv(out / "rounds.csv", index=False)
    plots = plot_curves(rounds, out / "plots")
    spec = {f"grid {i + 1}": {k: v for k, v in s.to_dict().items() if k not in ("test", "gold_col", "text_col")}
            for i, s in enumerate(specs(args.student))}
    command = "python benchmarks/selection_grid.py" + (" --report-only" if args.report_only else "")
    write_report(rounds, args.md, out, spec, command, plots=plots)  # grid time: cached runs make it meaningless
    print(f"{time.perf_counter() - t0:.0f}s (runs already cached are not re-run)")
    print(f"wrote {args.md} and {out}")


if __name__ == "__main__":
    main()
