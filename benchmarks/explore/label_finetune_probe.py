"""Probe: does fine-tuning all-mpnet-base-v2 end to end (torch, CPU) imitate the teacher more closely than the
frozen encoders the job uses (mpnet-lr and the ensemble), with the same random training labels?

One split per dataset (seed 0): 2,400 uniform held-out documents, 2,000 random training labels from the rest.
Reported per student: accuracy vs the teacher on the held-out rows and the least escalation rate at which the
cascade agrees with the teacher at 0.90 / 0.95 / 0.98 there (threshold chosen on those rows: no guarantee, the
same for every student). CPU cost: ~5 training docs/s and ~16 inference docs/s for mpnet in torch on 2 cores,
so a fit on 2,000 labels (2 epochs) takes ~15 min.

    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_finetune_probe.py mr_chatgpt ag_news
"""
import json
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


def finetune(texts, train, y, test, k):
    """``text-finetune[base=mpnet]`` (what ``thrifty label --finetune`` fits) on rows ``train``; probabilities on ``test``."""
    s = FineTuneStudent(base="mpnet", random_state=0).fit(np.asarray([texts[i] for i in train], dtype=object), y)
    return full_proba(s, np.asarray([texts[i] for i in test], dtype=object), k)


torch.set_num_threads(2)
for name in sys.argv[1:]:
    task, texts, T = recorded(name)
    k = task.n_labels
    rng = np.random.default_rng(0)
    ok = rng.permutation(np.flatnonzero(T >= 0))
    test, train = ok[:2400], ok[2400:4400]
    feats = make_features("mpnet").fit(texts)
    X = np.asarray(feats.transform(texts), dtype=np.float32)
    P = {"mpnet-lr": Ensemble(["mpnet-lr"], k, neighbours=0).fit(texts, train, T[train], first=(feats, X)).proba_[test],
         "ensemble": Ensemble(ensemble_members("mpnet-lr"), k).fit(texts, train, T[train], first=(feats, X)).proba_[test]}
    t0 = time.time()
    P["finetuned"] = finetune(texts, train, T[train], test, k)
    ft_s = time.time() - t0
    g = np.exp((np.log(P["ensemble"] + 1e-9) + np.log(P["finetuned"] + 1e-9)) / 2)
    P["ensemble x finetuned (geo. mean)"] = g / g.sum(1, keepdims=True)
    res = {s: {"accuracy": round(float((p.argmax(1) == T[test]).mean()), 4),
               **{f"escalation@{t}": oracle(p, T[test], t) for t in (0.9, 0.95, 0.98)}} for s, p in P.items()}
    print(name, json.dumps({"train": len(train), "test": len(test), "finetune_s": round(ft_s), **res}), flush=True)
