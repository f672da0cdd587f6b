"""Tables (markdown) from `benchmarks/end_to_end.py` results: one row per dataset x variant x target.

    python benchmarks/end_to_end_report.py benchmarks/results/label > benchmarks/results/label/report.md
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

LEARNERS = {"mraru": "label (M-RARU)", "random": "label, random selection", "soft": "label + soft targets",
            "self_train": "label + self-training", "scale": "label, 10^6 settings as far as the corpus has room (val, cap: see the JSON)"}
STOPS = {"": "stop: projection, patience 2", "@p4": "stop: projection, patience 4", "@cap": "to the label cap (1,000; scale: see the JSON)"}
ORDER = [v + s for v in LEARNERS for s in STOPS] + ["today"]
NAMES = {v + s: f"{LEARNERS[v]}; {STOPS[s]}" for v in LEARNERS for s in STOPS}
NAMES["today"] = "today: distill --budget 500 + predict --cascade"


def new_docs(vs: list[dict]) -> str:
    """Escalation rate of the chosen threshold on the audit (uniform, never trained on): what new documents need."""
    xs = [v["escalation_rate_1e6"] for v in vs if "escalation_rate_1e6" in v]
    return f"{100 * np.mean(xs):.1f}%" if xs else "-"


def main(folder: Path) -> None:
    files = sorted(folder.glob("*.json"))
    print("| dataset (docs) | method | target | met | realised agreement (min-max) | calls % of corpus: audit / val / train / esc | escalation: rest / new docs (ceiling) | cost at 10^6 (% of teacher) | gold acc (teacher) | est. CI covers |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary = defaultdict(list)
    for f in files:
        r = json.loads(f.read_text())
        n = r["n_docs"]
        groups = defaultdict(list)
        for k, v in r["runs"].items():
            var, t, _ = k.split("|")
            groups[(var, t)].append(v)
        for var in ORDER:
            for t in sorted({t for v, t in groups if v == var}, key=float):
                vs = groups[(var, t)]
                ag = [v["agreement"] for v in vs]
                pct = lambda k: np.mean([100 * v.get(k, 0) / n for v in vs])  # noqa: E731
                esc_pct = np.mean([100 * v["escalations"] / n for v in vs])
                ceil = r["ceiling"][t]["escalation_rate"]
                covers = [v["est_covers"] for v in vs if "est_covers" in v]
                summary[(var, t)].append({"met": sum(v["met"] for v in vs), "n": len(vs),
                                          "pct_1e6": float(np.mean([v["pct_1e6"] for v in vs])), "dataset": r["dataset"]})
                print(f"| {r['dataset']} ({n:,}) | {NAMES[var]} | {t} | {sum(v['met'] for v in vs)}/{len(vs)} | "
                      f"{np.mean(ag):.3f} ({min(ag):.3f}-{max(ag):.3f}) | "
                      f"{pct('audit'):.1f} / {pct('val'):.1f} / {pct('train'):.1f} / {esc_pct:.1f} | "
                      f"{100 * np.mean([v['escalation_rate'] for v in vs]):.1f}% / "
                      f"{new_docs(vs)} ({100 * ceil:.1f}%) | "
                      f"{np.mean([v['pct_1e6'] for v in vs]):.1f}% | "
                      f"{np.mean([v['gold_accuracy'] for v in vs]):.3f} ({r['teacher_gold_accuracy']:.3f}) | "
                      f"{f'{sum(covers)}/{len(covers)}' if covers else '-'} |")
    print()
    print("| method | target | runs meeting the target | median cost at 10^6 over datasets (% of teacher) |")
    print("|---|---|---|---|")
    for var in ORDER:
        for t in sorted({t for v, t in summary if v == var}, key=float):
            rows = summary[(var, t)]
            print(f"| {NAMES[var]} | {t} | {sum(x['met'] for x in rows)}/{sum(x['n'] for x in rows)} | "
                  f"{np.median([x['pct_1e6'] for x in rows]):.1f}% |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
