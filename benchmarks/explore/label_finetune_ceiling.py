"""All-labels ceiling of ``--finetune``'s pool (the strongest student the installed extras allow), measured as
``label_ensemble_ceiling.py`` measures the frozen ensemble's: every teacher label, 5-fold cross-fitted, threshold
chosen by point estimate on all out-of-fold rows; escalation rate for targets 0.90 / 0.95 / 0.98.

Per fold: the frozen ensemble (``Ensemble`` of the installed students + kNN), all-mpnet-base-v2 fine-tuned on the
fold's training rows exactly as the job fits it (``fit_finetuned(FINETUNE_SPEC, ...)``), and their geometric mean
(the pool ``--finetune`` builds). Each fold's out-of-fold probabilities are saved in ``OUT/DATASET_foldK.npz``, so
a killed run continues where it stopped. ~20 min a fold on trec6 (4,350 labels, 2 cores).

    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_finetune_ceiling.py --out benchmarks/results/label/ft_ceiling trec6
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import recorded
from sklearn.model_selection import KFold

from thrifty.cascade import choose_threshold
from thrifty.features import make_features
from thrifty.labelling.ensemble import Ensemble, combine, ensemble_members
from thrifty.labelling.finetuned import FINETUNE_SPEC, fit_finetuned

KINDS = ("ensemble", "finetuned", "pool")


def fold(task, texts, feats, X, T, tr, te):
    ens = Ensemble(ensemble_members("mpnet-lr"), task.n_labels).fit(texts, tr, T[tr], first=(feats, X)).proba_[te]
    sub = [texts[i] for i in tr] + [texts[i] for i in te]
    _, ft, times = fit_finetuned(FINETUNE_SPEC, sub, np.arange(len(tr)), T[tr], task.labels)
    ft = ft[len(tr):]
    return {"ensemble": ens, "finetuned": ft, "pool": combine(np.array([0.5, 0.5]), [ens, ft])}, times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("datasets", nargs="+")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for name in a.datasets:
        task, texts, T = recorded(name)
        feats = make_features("mpnet").fit(texts)
        X = np.asarray(feats.transform(texts), dtype=np.float32)
        ok = np.flatnonzero(T >= 0)
        oof = {k: np.zeros((len(T), task.n_labels)) for k in KINDS}
        fit_s = []
        for j, (tr, te) in enumerate(KFold(5, shuffle=True, random_state=0).split(ok)):
            path = a.out / f"{name}_fold{j}.npz"
            if not path.exists():
                t0 = time.perf_counter()
                P, times = fold(task, texts, feats, X, T, ok[tr], ok[te])
                np.savez(path, rows=ok[te], fit_s=times["fit_s"], **P)
                print(f"{name} fold {j}: {len(tr)} labels, fine-tune {times['fit_s']:.0f} s, "
                      f"all {time.perf_counter() - t0:.0f} s", flush=True)
            z = np.load(path)
            for k in KINDS:
                oof[k][z["rows"]] = z[k]
            fit_s.append(float(z["fit_s"]))
        out = {"n": len(ok), "finetune_s": [round(s) for s in fit_s]}
        for k, P in oof.items():
            out[f"{k}:accuracy"] = round(float((P[ok].argmax(1) == T[ok]).mean()), 4)
            for t in (0.9, 0.95, 0.98):
                plan = choose_threshold(P[ok].max(1), P[ok].argmax(1), T[ok], target_agreement=t, guarantee="estimate")
                out[f"{k}@{t}"] = round(float(plan.est_escalation_rate), 4)
        line = f"{name} {json.dumps(out)}"
        print(line, flush=True)
        with open(a.out / "ceiling.txt", "a", encoding="utf-8") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
