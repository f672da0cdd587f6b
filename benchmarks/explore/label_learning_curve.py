"""Escalation for a 0.95 target vs random training labels (500..4,000) and validation size (LTT), and the oracle threshold."""
import json
import sys

import numpy as np
from _common import embed, proba, recorded
from sklearn.linear_model import LogisticRegression

from thrifty.labelling.job import escalation_for_target

for name in sys.argv[2:]:
    task, texts, T = recorded(name)
    k = task.n_labels
    X = embed(sys.argv[1], texts)
    ok = np.flatnonzero(T >= 0)
    out = {}
    for seed in [0, 1, 2]:
        perm = np.random.default_rng(seed).permutation(ok)
        val = perm[:1000]; pool = perm[1000:]
        test = pool[-max(600, len(pool) // 4):]; trainable = pool[:len(pool) - len(test)]
        for n in [500, 1000, 2000, 4000]:
            if n > len(trainable): continue
            tr = trainable[:n]
            P = proba(LogisticRegression(C=10, max_iter=1000).fit(X[tr], T[tr]), X, k)
            for nv in [300, 1000]:
                _, rate = escalation_for_target(P, val[:nv], T[val[:nv]], test, 0.95, 0.1)
                out.setdefault(f"n{n} val{nv}", []).append(round(rate, 3))
            # oracle: smallest escalation on test meeting 0.95 on test
            conf = P[test].max(1); ag = P[test].argmax(1) == T[test]
            o = np.argsort(-conf); err = np.cumsum(~ag[o]); kept = np.arange(1, len(o) + 1)
            okk = err <= 0.05 * len(o); best = kept[okk].max() if okk.any() else 0
            out.setdefault(f"n{n} oracle", []).append(round(1 - best / len(o), 3))
    print(name, sys.argv[1], json.dumps({a: [float(np.mean(b)).__round__(3), b] for a, b in out.items()}), flush=True)
