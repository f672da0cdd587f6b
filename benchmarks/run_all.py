"""Regenerate benchmarks/results/ and BENCHMARKS.md from scratch (the default grid + scale probe).

    nice -n 10 .venv/bin/python benchmarks/run_all.py            # ~1 h on 2 shared cores
    .venv/bin/python benchmarks/run_all.py --report-only          # rebuild the report from cached runs
    .venv/bin/python benchmarks/run_all.py --smoke                # CI-sized

Finished runs are cached in .bench-cache/, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thrifty.bench import default_spec, run_benchmark, run_scale, smoke_spec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CI-sized grid, written under --out")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report from cached runs")
    ap.add_argument("--no-scale", action="store_true", help="skip the scale probe")
    ap.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results (--smoke: .bench-cache/smoke/results)")
    ap.add_argument("--md", type=Path, default=None, help="default BENCHMARKS.md (--smoke: .bench-cache/smoke/BENCHMARKS.md)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench-cache")
    args = ap.parse_args()
    smoke_dir = ROOT / ".bench-cache" / "smoke"  # a smoke run never overwrites the committed results
    args.out = args.out or (smoke_dir / "results" if args.smoke else ROOT / "benchmarks" / "results")
    args.md = args.md or (smoke_dir / "BENCHMARKS.md" if args.smoke else ROOT / "BENCHMARKS.md")
    spec = smoke_spec() if args.smoke else default_spec()
    if args.seeds is not None:
        spec.seeds = args.seeds
    if not (args.no_scale or args.report_only or args.smoke):
        run_scale(args.out)
    flags = " ".join(f for f, on in (("--smoke", args.smoke), ("--report-only", args.report_only)) if on)
    run_benchmark(spec, out_dir=args.out, md=args.md, cache_dir=args.cache, report_only=args.report_only,
                  command=f"python benchmarks/run_all.py {flags}".strip())


if __name__ == "__main__":
    main()
