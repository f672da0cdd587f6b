"""All-labels ceilings (5-fold) of mpnet-lr, minilm-lr, both concatenated, and their average; and 1,000 random labels."""
import json
import sys

import numpy as np
from _common import embed as feats, proba, recorded
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from thrifty.cascade import choose_threshold
from thrifty.labelling.job import escalation_for_target


def lr(X, y, C=10.0):
    return LogisticRegression(C=C, max_iter=1000).fit(X, y)


for name in sys.argv[1:]:
    task, texts, T = recorded(name)
    k = task.n_labels
    Xs = {"mpnet": feats("mpnet", texts), "minilm": feats("minilm", texts)}
    Xs["concat"] = np.hstack([Xs["mpnet"], Xs["minilm"]])
    ok = np.flatnonzero(T >= 0)
    out = {}
    # ceiling, 5-fold
    for fn in ["mpnet", "minilm", "concat"]:
        for C in [1.0, 10.0]:
            oof = np.zeros((len(T), k))
            for tr, te in KFold(5, shuffle=True, random_state=0).split(ok):
                oof[ok[te]] = proba(lr(Xs[fn][ok[tr]], T[ok[tr]], C), Xs[fn][ok[te]], k)
            plan = choose_threshold(oof[ok].max(1), oof[ok].argmax(1), T[ok], target_agreement=0.95)
            out[f"ceil {fn} C={C}"] = plan.est_escalation_rate
            if fn == "mpnet" and C == 10.0: oof_mp = oof
            if fn == "minilm" and C == 10.0: oof_mi = oof
    ens = (oof_mp + oof_mi) / 2
    plan = choose_threshold(ens[ok].max(1), ens[ok].argmax(1), T[ok], target_agreement=0.95)
    out["ceil ens(mp,mi)"] = plan.est_escalation_rate
    # realistic: 1000 random labels, 300 val, LTT
    for seed in [0, 1]:
        rng = np.random.default_rng(seed)
        perm = rng.permutation(ok)
        val, tr, rest = perm[:300], perm[300:1300], perm[1300:]
        for fn in ["mpnet", "minilm", "concat"]:
            P = proba(lr(Xs[fn][tr], T[tr]), Xs[fn], k)
            ch, rate = escalation_for_target(P, val, T[val], rest, 0.95, 0.1)
            out.setdefault(f"1000 {fn}", []).append(rate)
    print(name, json.dumps({a: (round(b, 3) if isinstance(b, float) else [round(x, 3) for x in b]) for a, b in out.items()}), flush=True)
