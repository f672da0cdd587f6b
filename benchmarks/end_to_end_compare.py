"""Two students side by side from `benchmarks/end_to_end.py` result folders (same datasets, seeds, targets).

    python benchmarks/end_to_end_compare.py benchmarks/results/label benchmarks/results/label/mpnet

Per dataset and target, for each folder: runs meeting the target (lowest realised agreement),
escalation rate for new documents and projected cost at 10^6 documents (% of asking the teacher
about everything) for the default job (M-RARU, patience 4) and with 1,000 training labels, and
the all-labels ceiling. Only the seeds both folders ran are compared.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def runs(path: Path) -> tuple[dict, dict]:
    r = json.loads(path.read_text())
    by: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for k, v in r["runs"].items():
        var, t, seed = k.split("|")
        by[(var, t)][seed] = v
    return r, by


def cell(vs: list[dict]) -> str:
    ag = min(v["agreement"] for v in vs)
    return (f"{sum(v['met'] for v in vs)}/{len(vs)} ({ag:.3f}) | {100 * np.mean([v['escalation_rate_1e6'] for v in vs]):.1f}% | "
            f"{np.mean([v['pct_1e6'] for v in vs]):.1f}%")


def main(a: Path, b: Path) -> None:
    print(f"| dataset | target | student | met (min) | default: new docs | default: 10^6 | 1,000 labels: new docs | "
          f"1,000 labels: 10^6 | ceiling |")
    print("|---|---|---|---|---|---|---|---|---|")
    for fb in sorted(b.glob("*.json")):
        fa = a / fb.name
        if not fa.exists():
            continue
        (ra, ba), (rb, bb) = runs(fa), runs(fb)
        for t in sorted({t for v, t in bb if v == "mraru@p4"}, key=float):
            seeds = sorted(set(ba[("mraru@p4", t)]) & set(bb[("mraru@p4", t)]))
            for r, by in ((ra, ba), (rb, bb)):
                d, c = [by[("mraru@p4", t)][s] for s in seeds], [by[("mraru@cap", t)][s] for s in seeds]
                met, new, cost = cell(d).split(" | ")
                _, new_c, cost_c = cell(c).split(" | ")
                print(f"| {r['dataset']} | {t} | {r['features']}-lr | {met} | {new} | {cost} | {new_c} | {cost_c} | "
                      f"{100 * r['ceiling'][t]['escalation_rate']:.1f}% |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
