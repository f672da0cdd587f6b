"""What ``--finetune`` does to a large job's cost at 0.95: ``label_gap.py``'s measurement with the pool added.

For each dataset and seed, the job's learning half at the ``scale`` settings (as ``label_gap.py``: M-RARU,
mpnet-lr, validation sample and label cap up to 2,000), then at the label cap

- ``ensemble``: the frozen final student (the log-linear pool of the installed students, what the job keeps
  without ``--finetune``);
- ``pool``: that ensemble pooled with all-mpnet-base-v2 fine-tuned on the same training labels, exactly as
  ``thrifty label --finetune`` builds it (``labelling.finetuned.fit_finetuned`` with ``FINETUNE_SPEC``, then the
  geometric mean, ``Ensemble.with_member``);
- ``job --finetune``: the job's choice between the two (``choose_final``: each candidate's Learn-then-Test
  threshold at ``delta / 2``, the one escalating less kept).

Everything is measured on the uniform documents nothing trained on (``U``: audit + validation; a new document
of a large corpus is a uniform draw): the oracle escalation rate (threshold chosen on ``U`` itself, no
guarantee) and Learn-then-Test on 5,000 rows drawn with replacement from ``U`` (a 10^6-document job's
validation sample), 200 draws: the mean escalation rate on ``U`` and how often the cascade met the target there.
Cost at 10^6 = that rate + (400 audit + 5,000 validation + the labels) / 10^6.

    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_gap_finetune.py --out benchmarks/results/label/gap_finetune
    # the issue's goal (b), at most 1,000 training labels:
    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_gap_finetune.py --labels 1000 \
        --datasets mr_chatgpt ag_news trec6 --out benchmarks/results/label/gap_finetune_1000
    python benchmarks/explore/label_gap_finetune.py --out benchmarks/results/label/gap_finetune --tables
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from end_to_end import DATASETS, ensembled  # noqa: E402
from label_gap import arguments, ceilings, oracle, outcome, scale_run, unfinished  # noqa: E402

from thrifty.labelling.ensemble import combine  # noqa: E402
from thrifty.labelling.finetuned import FINETUNE_SPEC, choose_final, fit_finetuned  # noqa: E402
from thrifty.labelling.job import LabelConfig  # noqa: E402
from thrifty.labelling.projection import SCALE_1E6  # noqa: E402
from thrifty.labelling.thresholds import ltt_threshold  # noqa: E402

ORDER = ["trec6", "mr_chatgpt", "sst2_llama3", "gwsd_gpt4o", "ag_news", "banking77"]  # fastest fine-tunes first


def candidates(task, texts, feats, X, T, seed: int, rnd: dict, U: np.ndarray, spec: str):
    """At round ``rnd``'s labels: ``(training rows, {"ensemble", "pool"} probabilities of U, the fine-tuned student's,
    fit_finetuned's times, seconds)``: the frozen ensemble, and the pool with all-mpnet-base-v2 fine-tuned on them."""
    tr = rnd["train_idx"][T[rnd["train_idx"]] >= 0]
    ens = ensembled(task, texts, feats, X, T, seed, "mpnet")(rnd)[U]
    t0 = time.perf_counter()
    sub = [texts[i] for i in tr] + [texts[i] for i in U]
    _, ft, times = fit_finetuned(spec, sub, np.arange(len(tr)), T[tr], task.labels, seed=seed)
    ft = ft[len(tr):]
    return tr, {"ensemble": ens, "pool": combine(np.array([0.5, 0.5]), [ens, ft])}, ft, times, time.perf_counter() - t0


def measure(P: dict[str, np.ndarray], T: np.ndarray, target: float, delta: float, draws: int, n_val: int,
            rng: np.random.Generator) -> dict[str, float]:
    """Oracle and Learn-then-Test on ``n_val`` rows drawn from ``U`` (the rows of ``T``), per candidate and for the
    job's choice between them."""
    row: dict[str, float] = {}
    for name, p in P.items():
        row[f"{name}:oracle"] = oracle(p.max(1), p.argmax(1), T, target)
    rates: dict[str, list] = {}
    kept = []
    for _ in range(draws):
        d = rng.choice(len(T), size=n_val, replace=True)
        for name, p in P.items():  # each alone, at the job's delta (what it would get without a choice)
            c = ltt_threshold(p[d].max(1), p[d].argmax(1), T[d], target, delta)
            rates.setdefault(name, []).append(outcome(p.max(1), p.argmax(1), T, c.threshold, target))
        best, _, choices = choose_final(P, d, T[d], target, delta)
        p = P[best]
        rates.setdefault("job --finetune", []).append(outcome(p.max(1), p.argmax(1), T, choices[best].threshold, target))
        kept.append(best == "pool")
    for name, rs in rates.items():
        row[f"{name}:ltt@{n_val}"] = float(np.mean([r[0] for r in rs]))
        row[f"{name}:ltt@{n_val}_met"] = float(np.mean([r[2] for r in rs]))
    row[f"pool_kept@{n_val}"] = float(np.mean(kept))
    return row


def ratio(a: float, ceiling: float) -> str:
    return f"{a / ceiling:.2f}x" if ceiling > 0 else "-"


def tables(out: Path, target: float = 0.95) -> str:
    ceil = ceilings(out, target)
    head = ("| dataset | seed | labels | oracle: ensemble / pool | LTT@5,000: ensemble (met) | pool alone (met) | "
            "job --finetune (met, pool kept) | job --finetune / ceiling | cost at 10^6: job / job --finetune | "
            "fine-tune s |\n|---|---|---|---|---|---|---|---|---|---|")
    rows, costs = [head], {}
    for name in DATASETS:
        f = out / f"{name}.json"
        if not f.exists():
            continue
        res = json.loads(f.read_text())
        for key, r in res["runs"].items():
            if not key.startswith(f"{target}|"):
                continue
            lab, fixed = r["train"], (400 + 5000 + r["train"]) / SCALE_1E6
            costs.setdefault(key.split("|")[1], []).append((r["ensemble:ltt@5000"] + fixed, r["job --finetune:ltt@5000"] + fixed))

            def cell(n):
                return f"{100 * r[f'{n}:ltt@5000']:.1f}% ({100 * r[f'{n}:ltt@5000_met']:.0f}%)"
            seed = key.split("|")[1]
            rows.append(f"| {name} | {seed} | {lab:,} | {100 * r['ensemble:oracle']:.1f}% / {100 * r['pool:oracle']:.1f}% | "
                        f"{cell('ensemble')} | {cell('pool')} | {cell('job --finetune')[:-1]}, "
                        f"{100 * r['pool_kept@5000']:.0f}%) | {ratio(r['job --finetune:ltt@5000'], ceil[name])} | "
                        f"{100 * (r['ensemble:ltt@5000'] + fixed):.1f}% / "
                        f"**{100 * (r['job --finetune:ltt@5000'] + fixed):.1f}%** | {res['finetune_s'][seed]:.0f} |")
    for seed, c in sorted(costs.items()):
        job, ft = np.median(np.array(c), axis=0)
        rows.append(f"\nseed {seed}: median cost at 10^6 over {len(c)} sets, job {100 * job:.1f}% / job --finetune "
                    f"{100 * ft:.1f}%")
    return "\n".join(rows)


def main() -> None:
    ap = arguments(__doc__, ORDER, [0])
    ap.add_argument("--spec", default=FINETUNE_SPEC, help="The fine-tuned student (default: the job's).")
    ap.add_argument("--labels", type=int, default=None,
                    help="Stop at the round with this many training labels (default: the label cap), e.g. 1000 for "
                         "the issue's goal (b).")
    a = ap.parse_args()
    if a.tables:
        print(tables(a.out))
        return
    cfg = LabelConfig()
    for name, path, res, seeds, (task, teacher, texts, T, feats, X) in unfinished(a):
        res = res or {"dataset": name, "n_docs": len(texts), "spec": a.spec, "runs": {}, "finetune_s": {}}
        for seed in seeds:  # the same samples and labels as label_gap.py's run of this seed
            v, U, _ = scale_run(task, teacher, texts, X, T, seed, a.scale_max)
            last = [r for r in v["rounds"] if a.labels is None or r["n_train"] <= a.labels][-1]  # the last round within --labels
            tr, P, ft, times, res["finetune_s"][str(seed)] = candidates(task, texts, feats, X, T, seed, last, U, a.spec)
            rng = np.random.default_rng(2000 + seed)
            for t in a.targets:
                row = {"train": int(len(tr)), "uniform": int(len(U)), **times,
                       "finetuned:oracle": oracle(ft.max(1), ft.argmax(1), T[U], t),
                       "agreement": {k: float((p.argmax(1) == T[U]).mean()) for k, p in {**P, "finetuned": ft}.items()},
                       **measure(P, T[U], t, cfg.delta, a.draws, 5000, rng)}
                res["runs"][f"{t}|{seed}"] = row
                print(name, seed, t, {k: round(x, 3) for k, x in row.items() if isinstance(x, float)}, flush=True)
            path.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
