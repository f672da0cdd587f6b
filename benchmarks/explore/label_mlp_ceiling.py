"""All-labels ceiling (5-fold, point estimate, 0.95) of mpnet + logistic regression vs an MLP head (and their
log-average): does a non-linear head on the frozen embeddings imitate the teacher more closely?

    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_mlp_ceiling.py ag_news mr_chatgpt trec6
"""
import json
import sys
import time

import numpy as np
from _common import embed, proba, recorded
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.model_selection import KFold
from thrifty.cascade import choose_threshold

for name in sys.argv[1:]:
    task, texts, T = recorded(name)
    k = task.n_labels
    X = embed("mpnet", texts)
    ok = np.flatnonzero(T >= 0)
    models = {"lr": lambda: LogisticRegression(C=10, max_iter=2000),
              "mlp": lambda: MLPClassifier((512,), alpha=1e-3, early_stopping=True, max_iter=200, random_state=0),
              "mlp-a1e-2": lambda: MLPClassifier((512,), alpha=1e-2, early_stopping=True, max_iter=200, random_state=0)}
    oof = {m: np.zeros((len(T), k)) for m in models}
    t0 = time.time()
    for tr, te in KFold(5, shuffle=True, random_state=0).split(ok):
        for m, f in models.items():
            oof[m][ok[te]] = proba(f().fit(X[ok[tr]], T[ok[tr]]), X[ok[te]], k)
    oof["avg"] = np.exp((np.log(oof["lr"] + 1e-9) + np.log(oof["mlp"] + 1e-9)) / 2)
    oof["avg"] /= oof["avg"].sum(1, keepdims=True)
    out = {}
    for m, P in oof.items():
        plan = choose_threshold(P[ok].max(1), P[ok].argmax(1), T[ok], target_agreement=0.95, guarantee="estimate")
        out[m] = (round(float((P[ok].argmax(1) == T[ok]).mean()), 3), round(float(plan.est_escalation_rate), 4))
    print(name, len(ok), json.dumps(out), f"{time.time()-t0:.0f}s", flush=True)
