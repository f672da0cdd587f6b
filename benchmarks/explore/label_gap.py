"""Where the cost at 0.95 goes: the label job at scale split into what its labels buy and what its guarantee costs.

For each dataset and seed, the job's learning half at the ``scale`` settings of ``benchmarks/end_to_end.py``
(validation sample and training-label cap as near a 10^6-document job's 5,000 as the corpus allows, at most 2,000;
M-RARU, mpnet-lr, then the final ensemble on the last round's labels). A new document of a large corpus is a
uniform draw, so everything is measured on the uniform samples the student never trained on (``U``: audit and
validation; not on what selection left over, which is easier than a new document), with the recorded teacher:

- ``job``: the escalation rate on the audit with the Learn-then-Test threshold on the job's own validation rows
  (``escalation_rate_1e6`` of ``end_to_end.py``);
- ``oracle``: the least escalation rate at which the cascade agrees with the teacher on ``U`` at the target
  (a threshold chosen on ``U`` itself: no guarantee; about what these labels can buy);
- ``ltt@N``: Learn-then-Test on N rows drawn with replacement from ``U`` (a corpus distributed as ``U``, sampled
  as the job samples its validation rows; N = the job's and a 10^6-document job's 5,000), 200 draws: mean
  escalation rate on ``U`` and how often the cascade's agreement on ``U`` met the target;
- the all-labels ceiling (every teacher label, 5-fold) is in ``results/label/mpnet-ensemble/ceiling.txt``.

So job / oracle is what the guarantee on this many validation rows costs, ltt@5000 / oracle what it costs at a
10^6-document job's size, and oracle / ceiling what the training labels leave on the table.

    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_gap.py --out benchmarks/results/label/gap
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from end_to_end import DATASETS, ensembled, run_variant  # noqa: E402

from thrifty.bench.datasets import load_dataset, make_bench_teacher  # noqa: E402
from thrifty.cascade import agreement_curve  # noqa: E402
from thrifty.features import make_features  # noqa: E402
from thrifty.labelling.job import LabelConfig  # noqa: E402
from thrifty.labelling.projection import SCALE_1E6  # noqa: E402
from thrifty.labelling.thresholds import ltt_threshold  # noqa: E402


def outcome(conf, pred, T, thr, target):
    """Escalation rate and agreement with the teacher when documents below ``thr`` get the teacher's label."""
    esc = conf < thr
    agree = np.where(esc, True, pred == T).mean()
    return float(esc.mean()), float(agree), bool(agree >= target)


def oracle(conf, pred, T, target):
    thr, agree, esc = agreement_curve(conf, pred, T)
    ok = agree / len(T) >= target
    return float(esc[ok].min() / len(T)) if ok.any() else 1.0


def load(name: str):
    """``(task, teacher, texts, T, features, X)``: a dataset with its recorded teacher (``T``: the teacher's label
    index per document, -1 where it gave none) and its mpnet embeddings."""
    data = load_dataset(name)
    setup = make_bench_teacher("recorded", data, price_model="gpt-4o-mini")
    task, texts = data.task, setup.corpus.texts
    T = np.asarray([task.index(x) if x is not None else -1 for x in setup.answers])
    feats = make_features("mpnet")
    feats.fit(texts)
    return task, setup.teacher, texts, T, feats, feats.transform(texts)


def scale_run(task, teacher, texts, X, T, seed: int, scale_max: int, cap: int | None = None, n_val: int | None = None):
    """The job's learning half at the ``scale`` settings (validation sample and label cap as near a 10^6-document
    job's as the corpus allows, at most ``scale_max``; or the given ``cap`` and ``n_val``): ``(rounds, U, validation
    size)``, ``U`` the uniform documents nothing trains on (audit + validation) that the teacher answered."""
    cfg, n = LabelConfig(), len(texts)
    cap = cap or min(cfg.train_cap(SCALE_1E6), scale_max, (n - 700) // 2)
    n_val = n_val or min(cfg.sizes(SCALE_1E6)[1], scale_max, n - 400 - cap - 300)
    v = run_variant(task, teacher, texts, X, T, None, seed, LabelConfig(audit_size=400, val_size=n_val),
                    "mraru", False, None, cap)
    U = np.concatenate([v["audit_idx"], v["val_idx"]])
    return v, U[T[U] >= 0], n_val


def ceilings(results: Path, target: float) -> dict[str, float]:
    """The frozen ensemble's all-labels ceiling per dataset (``label_ensemble_ceiling.py``'s ``ceiling.txt``
    beside ``results``)."""
    ceil = {}
    for line in (results.parent / "mpnet-ensemble" / "ceiling.txt").read_text().splitlines():
        name, js = line.split(" ", 1)
        ceil[name] = json.loads(js)[f"ensemble@{target}"]
    return ceil


def tables(out: Path, target: float = 0.95) -> str:
    """Markdown: per dataset, the ensemble at 1,000 labels and at the cap, next to the all-labels ceiling."""
    ceil = ceilings(out, target)
    head = ("| dataset | labels | job (its own validation rows) | oracle (no guarantee) | LTT on 5,000 rows (met) | "
            "all-labels ceiling | LTT@5,000 / ceiling | cost at 10^6 |\n|---|---|---|---|---|---|---|---|")
    rows = [head]
    for name in DATASETS:
        f = out / f"{name}.json"
        if not f.exists():
            continue
        runs = json.loads(f.read_text())["runs"]
        for lab in sorted({int(k.split("@")[1].split("|")[0]) for k in runs if k.startswith("ensemble@")}):
            rs = [r for k, r in runs.items() if k.startswith(f"ensemble@{lab}|{target}|")]
            m = {x: float(np.mean([r[x] for r in rs])) for x in ("job", "oracle", "ltt@5000", "ltt@5000_met")}
            cost = m["ltt@5000"] + (400 + 5000 + lab) / SCALE_1E6
            rows.append(f"| {name} | {lab:,} | {100 * m['job']:.1f}% | {100 * m['oracle']:.1f}% | "
                        f"{100 * m['ltt@5000']:.1f}% ({100 * m['ltt@5000_met']:.0f}%) | {100 * ceil[name]:.1f}% | "
                        f"{m['ltt@5000'] / ceil[name]:.2f}x | {100 * cost:.1f}% |")
    return "\n".join(rows)


def arguments(doc: str, datasets: list[str], seeds: list[int]) -> argparse.ArgumentParser:
    """The options this script and ``label_gap_finetune.py`` share."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--datasets", nargs="+", default=datasets)
    ap.add_argument("--seeds", type=int, nargs="+", default=seeds)
    ap.add_argument("--targets", type=float, nargs="+", default=[0.9, 0.95, 0.98])
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--scale-max", type=int, default=2000)
    ap.add_argument("--tables", action="store_true", help="Print the markdown table of what --out holds.")
    return ap


def unfinished(a):
    """Each of ``a.datasets`` with a seed of ``a.seeds`` not in its JSON in ``a.out`` yet: its name, the JSON's path,
    what the JSON holds (None when there is none; runs are keyed ``...|seed``), the seeds to run and :func:`load`'s
    arrays. A later seed adds its runs to the same file."""
    a.out.mkdir(parents=True, exist_ok=True)
    for name in a.datasets:
        path = a.out / f"{name}.json"
        res = json.loads(path.read_text()) if path.exists() else None
        done = {int(k.rsplit("|", 1)[1]) for k in res["runs"]} if res else set()
        seeds = [s for s in a.seeds if s not in done]
        if seeds:
            yield name, path, res, seeds, load(name)


def main() -> None:
    a = arguments(__doc__, DATASETS, [0, 1, 2]).parse_args()
    if a.tables:
        print(tables(a.out))
        return
    cfg = LabelConfig()
    for name, path, res, seeds, (task, teacher, texts, T, feats, X) in unfinished(a):
        res = res or {"dataset": name, "n_docs": len(texts), "runs": {}}
        for seed in seeds:
            v, U, n_val = scale_run(task, teacher, texts, X, T, seed, a.scale_max)
            cal = v["val_idx"][T[v["val_idx"]] >= 0]
            aud = v["audit_idx"][T[v["audit_idx"]] >= 0]
            rng = np.random.default_rng(1000 + seed)
            ens = ensembled(task, texts, feats, X, T, seed, "mpnet")
            # 1,000 labels (goal (b) of issue 18) and the label cap
            for rnd in [r for r in v["rounds"] if r["n_train"] == 1000 or r is v["rounds"][-1]]:
                for sname, P in {"mpnet-lr": rnd["proba"], "ensemble": ens(rnd)}.items():
                    conf, pred = P.max(1), P.argmax(1)
                    for t in a.targets:
                        row = {"train": int(rnd["n_train"]), "val": int(len(cal)), "uniform": int(len(U)),
                               "oracle": oracle(conf[U], pred[U], T[U], t)}
                        ch = ltt_threshold(conf[cal], pred[cal], T[cal], t, cfg.delta)
                        row["job"], row["job_agreement"], row["job_met"] = outcome(conf[aud], pred[aud], T[aud], ch.threshold, t)
                        for N in (n_val, 5000):
                            rates, met = [], []
                            for _ in range(a.draws):
                                d = rng.choice(U, size=N, replace=True)
                                c = ltt_threshold(conf[d], pred[d], T[d], t, cfg.delta)
                                r_, _, m = outcome(conf[U], pred[U], T[U], c.threshold, t)
                                rates.append(r_)
                                met.append(m)
                            row[f"ltt@{N}"] = float(np.mean(rates))
                            row[f"ltt@{N}_met"] = float(np.mean(met))
                        res["runs"][f"{sname}@{rnd['n_train']}|{t}|{seed}"] = row
            print(name, seed, {k: round(x["ltt@5000"], 3) for k, x in res["runs"].items() if k.endswith(f"0.95|{seed}")},
                  flush=True)
        path.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
