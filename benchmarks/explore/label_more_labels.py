"""Past 2,000 labels: what a 10^6-document job's larger label budget (up to 5,000) does to the fine-tuned pool.

``label_gap_finetune.py`` stops at 2,000 training labels, the most these corpora allow beside 2,000 uniform
held-out documents. A 10^6-document job buys up to 5,000 (``LabelConfig.train_cap``), and on ag_news more labels
were the lever left for goal (c) (cost at 10^6 <= 10% of teacher-everything). Here the held-out documents shrink
to make room: for each seed, the job's learning half (M-RARU, mpnet-lr) with 400 audit + ``--val`` validation rows
(``U``, the uniform documents nothing trains on) and a label cap of ``--cap``; at each of ``--labels`` (the last
round within it, the same trajectory, so the same ``U``) the frozen ensemble and the pool with all-mpnet-base-v2
fine-tuned on those labels, measured as ``label_gap_finetune.py`` measures them: oracle rate on ``U``, and
Learn-then-Test on 5,000 rows drawn from ``U`` (200 draws) for each candidate and for the job's choice.
Cost at 10^6 = that rate + (400 + 5,000 + labels) / 10^6. ``U`` is small (1,400 rows at ``--val 1000``): an
oracle rate near 10% has a standard error of ~0.8 points, so read differences between label counts on the same
``U``, not against other scripts' numbers.

    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_more_labels.py --out benchmarks/results/label/more_labels
    python benchmarks/explore/label_more_labels.py --out benchmarks/results/label/more_labels --tables
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from label_gap import arguments, oracle, scale_run, unfinished  # noqa: E402
from label_gap_finetune import candidates, measure  # noqa: E402

from thrifty.labelling.finetuned import FINETUNE_SPEC  # noqa: E402
from thrifty.labelling.job import LabelConfig  # noqa: E402
from thrifty.labelling.projection import SCALE_1E6  # noqa: E402


def tables(out: Path, target: float = 0.95) -> str:
    rows = ["| dataset | seed | labels | held-out | oracle: ensemble / pool / fine-tuned | LTT@5,000: ensemble (met) | "
            "pool (met) | job --finetune (met) | cost at 10^6: ensemble / job --finetune | fine-tune s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for f in sorted(out.glob("*.json")):
        res = json.loads(f.read_text())
        for key, r in res["runs"].items():
            lab, t, seed = key.split("|")
            if float(t) != target:
                continue
            fixed = (400 + 5000 + r["train"]) / SCALE_1E6

            def cell(n):
                return f"{100 * r[f'{n}:ltt@5000']:.1f}% ({100 * r[f'{n}:ltt@5000_met']:.0f}%)"
            rows.append(f"| {res['dataset']} | {seed} | {r['train']:,} | {r['uniform']:,} | "
                        f"{100 * r['ensemble:oracle']:.1f}% / {100 * r['pool:oracle']:.1f}% / "
                        f"{100 * r['finetuned:oracle']:.1f}% | {cell('ensemble')} | {cell('pool')} | "
                        f"{cell('job --finetune')} | {100 * (r['ensemble:ltt@5000'] + fixed):.1f}% / "
                        f"**{100 * (r['job --finetune:ltt@5000'] + fixed):.1f}%** | {r['finetune_s']:.0f} |")
    return "\n".join(rows)


def main() -> None:
    ap = arguments(__doc__, ["ag_news"], [0])
    ap.add_argument("--labels", type=int, nargs="+", default=[2000, 4000])
    ap.add_argument("--cap", type=int, default=4000)
    ap.add_argument("--val", type=int, default=1000)
    a = ap.parse_args()
    if a.tables:
        print(tables(a.out))
        return
    cfg = LabelConfig()
    for name, path, res, seeds, (task, teacher, texts, T, feats, X) in unfinished(a):
        res = res or {"dataset": name, "n_docs": len(texts), "spec": FINETUNE_SPEC, "cap": a.cap, "val": a.val,
                      "runs": {}}
        for seed in seeds:
            v, U, _ = scale_run(task, teacher, texts, X, T, seed, a.scale_max, cap=a.cap, n_val=a.val)
            for labels in a.labels:
                last = [r for r in v["rounds"] if r["n_train"] <= labels][-1]
                tr, P, ft, times, spent = candidates(task, texts, feats, X, T, seed, last, U, FINETUNE_SPEC)
                rng = np.random.default_rng(3000 + seed)
                for t in a.targets:
                    row = {"train": int(len(tr)), "uniform": int(len(U)), "finetune_s": spent, **times,
                           "finetuned:oracle": oracle(ft.max(1), ft.argmax(1), T[U], t),
                           "agreement": {k: float((p.argmax(1) == T[U]).mean()) for k, p in {**P, "finetuned": ft}.items()},
                           **measure(P, T[U], t, cfg.delta, a.draws, 5000, rng)}
                    res["runs"][f"{labels}|{t}|{seed}"] = row
                    print(name, seed, labels, t, {k: round(x, 3) for k, x in row.items() if isinstance(x, float)},
                          flush=True)
                path.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
