"""At 1,000 random training labels, a 0.95 target (LTT on up to 1,000 validation rows): escalation for new documents
with mpnet-lr at several C, mpnet+MiniLM concatenated, and (``--cv``) C chosen by 5-fold log-loss."""
import sys

import numpy as np
from _common import embed, proba, recorded
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

from thrifty.labelling.job import escalation_for_target

cv = "--cv" in sys.argv
for name in [a for a in sys.argv[1:] if a != "--cv"]:
    task, texts, T = recorded(name)
    k = task.n_labels
    Xm = embed("mpnet", texts)
    models = {f"mpnet C={C}": (Xm, lambda C=C: LogisticRegression(C=C, max_iter=2000)) for C in (0.3, 1, 3, 10)}
    if cv:
        models = {"mpnet C=cv": (Xm, lambda: LogisticRegressionCV(Cs=[0.3, 1, 3, 10, 30], cv=5, scoring="neg_log_loss",
                                                                  max_iter=2000)), "mpnet C=10": models["mpnet C=10"]}
    else:
        Xc = np.hstack([Xm, embed("minilm", texts)])
        models.update({f"concat C={C}": (Xc, lambda C=C: LogisticRegression(C=C, max_iter=2000)) for C in (1, 10)})
    ok = np.flatnonzero(T >= 0)
    out: dict = {}
    for seed in [0, 1, 2, 3]:
        perm = np.random.default_rng(seed).permutation(ok)
        nv = min(1000, len(ok) // 4)
        val, pool = perm[:nv], perm[nv:]
        test = pool[-len(pool) // 3:]
        tr = pool[:min(1000, len(pool) - len(test))]
        for key, (X, make) in models.items():
            m = make().fit(X[tr], T[tr])
            if key == "mpnet C=cv":
                out.setdefault("chosen C", []).append(float(np.atleast_1d(m.C_)[0]))
            _, rate = escalation_for_target(proba(m, X, k), val, T[val], test, 0.95, 0.1)
            out.setdefault(key, []).append(rate)
    print(name, len(tr), nv, {a: (b if a == "chosen C" else round(float(np.mean(b)), 3)) for a, b in out.items()}, flush=True)
