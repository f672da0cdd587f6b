"""The fast tier's price in escalations, isolated: the same mpnet-lr student (1,000 random labels) with and
without a TF-IDF fast tier (distilled on its probabilities over 60% of the rest, keep threshold out of fold),
the composite's Learn-then-Test threshold on 1,000 validation rows, measured on the documents outside the pool.

    python benchmarks/explore/label_fast_tier.py 0.95 ag_news trec6 banking77 mr_chatgpt
"""
import json
import sys

import numpy as np
from _common import embed, proba, recorded
from sklearn.linear_model import LogisticRegression

from thrifty.labelling.thresholds import ltt_threshold
from thrifty.labelling.tiers import FastTier, cascade_scores

target = float(sys.argv[1])
for name in sys.argv[2:]:
    task, texts, T = recorded(name)
    X = embed("mpnet", texts)
    ok = np.flatnonzero(T >= 0)
    res: dict = {}
    for seed in (0, 1, 2):
        perm = np.random.default_rng(seed).permutation(ok)
        val, train = perm[:1000], perm[1000:2000]
        pool = perm[1000 : 1000 + int(0.6 * (len(perm) - 1000))]
        rest = perm[1000 + len(pool) :]
        P = proba(LogisticRegression(C=10, max_iter=1000).fit(X[train], T[train]), X, task.n_labels)
        ch = ltt_threshold(P[val].max(1), P[val].argmax(1), T[val], target, 0.1)
        res.setdefault("student only: escalated", []).append(float(np.mean(P[rest].max(1) < ch.threshold)))
        f = FastTier("tfidf-lr", tolerance=0.2 * (1 - target), seed=seed).fit([texts[i] for i in pool], P[pool])
        lab_v, sc_v, _ = cascade_scores(f.predict_proba([texts[i] for i in val]), f.threshold_, P[val])
        c2 = ltt_threshold(sc_v, lab_v, T[val], target, 0.1)
        lab, sc, kept = cascade_scores(f.predict_proba([texts[i] for i in rest]), f.threshold_, P[rest])
        res.setdefault("fast tier: escalated", []).append(float(np.mean(sc < c2.threshold)))
        res.setdefault("fast tier: kept", []).append(float(kept.mean()))
        res.setdefault("fast tier: realised", []).append(float(np.mean(np.where(sc < c2.threshold, T[rest], lab) == T[rest])))
    print(name, target, json.dumps({k: [round(float(np.mean(v)), 4), [round(x, 3) for x in v]] for k, v in res.items()}),
          flush=True)
