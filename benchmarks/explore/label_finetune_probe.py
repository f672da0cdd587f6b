"""Probe: does fine-tuning all-mpnet-base-v2 end to end (torch, CPU) imitate the teacher more closely than the
frozen encoders the job uses (mpnet-lr and the ensemble), with the same random training labels?

One split per dataset (seed 0): 2,400 uniform held-out documents (half the recorded rows on smaller sets), up to
2,000 random training labels from the rest.
Reported per student: accuracy vs the teacher on the held-out rows and the least escalation rate at which the
cascade agrees with the teacher at 0.90 / 0.95 / 0.98 there (threshold chosen on those rows: no guarantee, the
same for every student). CPU cost: ~5 training docs/s and ~16 inference docs/s for mpnet in torch on 2 cores,
so a fit on 2,000 labels (2 epochs) takes ~15 min.

    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_finetune_probe.py mr_chatgpt ag_news
"""
import json
import os
import sys
import time

import numpy as np
import torch
from _common import recorded

from thrifty.cascade import agreement_curve
from thrifty.features import make_features
from thrifty.students import FineTuneStudent, full_proba
from thrifty.labelling.ensemble import Ensemble, ensemble_members


def oracle(P, T, t):
    thr, agree, esc = agreement_curve(P.max(1), P.argmax(1), T)
    ok = agree / len(T) >= t
    return round(float(esc[ok].min() / len(T)), 4)


def finetune(texts, train, y, test, k, save=None):
    """``text-finetune[base=mpnet]`` (what ``thrifty label --finetune`` fits) on rows ``train``; probabilities on
    ``test``. ``save``: a folder to keep the fitted student in (``THRIFTY_PROBE_SAVE``)."""
    s = FineTuneStudent(base="mpnet", random_state=0).fit(np.asarray([texts[i] for i in train], dtype=object), y)
    if save:
        s.save(save)
    return full_proba(s, np.asarray([texts[i] for i in test], dtype=object), k)


def split(T):
    """Seed 0: ``(test, train)`` row indices among the documents the teacher answered."""
    ok = np.random.default_rng(0).permutation(np.flatnonzero(T >= 0))
    n_test = min(2400, len(ok) // 2)  # sst2/gwsd (~1,800 documents) and banking77's 3,996 recorded rows: halves
    return ok[:n_test], ok[n_test:n_test + 2000]


def main(names):
    torch.set_num_threads(2)
    for name in names:
        task, texts, T = recorded(name)
        k = task.n_labels
        test, train = split(T)
        feats = make_features("mpnet").fit(texts)
        X = np.asarray(feats.transform(texts), dtype=np.float32)
        P = {"mpnet-lr": Ensemble(["mpnet-lr"], k, neighbours=0).fit(texts, train, T[train], first=(feats, X)).proba_[test],
             "ensemble": Ensemble(ensemble_members("mpnet-lr"), k).fit(texts, train, T[train], first=(feats, X)).proba_[test]}
        t0 = time.time()
        keep = os.environ.get("THRIFTY_PROBE_SAVE")
        P["finetuned"] = finetune(texts, train, T[train], test, k, save=keep and os.path.join(keep, name))
        ft_s = time.time() - t0
        g = np.exp((np.log(P["ensemble"] + 1e-9) + np.log(P["finetuned"] + 1e-9)) / 2)
        P["ensemble x finetuned (geo. mean)"] = g / g.sum(1, keepdims=True)
        res = {s: {"accuracy": round(float((p.argmax(1) == T[test]).mean()), 4),
                   **{f"escalation@{t}": oracle(p, T[test], t) for t in (0.9, 0.95, 0.98)}} for s, p in P.items()}
        print(name, json.dumps({"train": len(train), "test": len(test), "finetune_s": round(ft_s), **res}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
