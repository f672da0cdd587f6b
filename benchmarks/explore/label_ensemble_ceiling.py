"""All-labels ceiling of the label job's ensemble (labelling/ensemble.py) next to mpnet-lr's: each trained on every
teacher label, 5-fold cross-fitted, threshold chosen by point estimate on all out-of-fold rows (the ceiling of
docs/label.md), escalation rate for targets 0.90 / 0.95 / 0.98.

    python benchmarks/explore/label_ensemble_ceiling.py mr_chatgpt gwsd_gpt4o sst2_llama3 ag_news trec6 banking77
"""
import json
import sys

import numpy as np
from _common import recorded
from sklearn.model_selection import KFold

from thrifty.cascade import choose_threshold
from thrifty.features import make_features
from thrifty.labelling.ensemble import Ensemble, ensemble_members

for name in sys.argv[1:]:
    task, texts, T = recorded(name)
    feats = make_features("mpnet").fit(texts)
    X = np.asarray(feats.transform(texts), dtype=np.float32)
    ok = np.flatnonzero(T >= 0)
    oof = {"mpnet-lr": np.zeros((len(T), task.n_labels)), "ensemble": np.zeros((len(T), task.n_labels))}
    for tr, te in KFold(5, shuffle=True, random_state=0).split(ok):
        ens = Ensemble(ensemble_members("mpnet-lr"), task.n_labels).fit(texts, ok[tr], T[ok[tr]], first=(feats, X))
        oof["ensemble"][ok[te]] = ens.proba_[ok[te]]
        oof["mpnet-lr"][ok[te]] = Ensemble(["mpnet-lr"], task.n_labels, neighbours=0).fit(
            texts, ok[tr], T[ok[tr]], first=(feats, X)).proba_[ok[te]]
    out = {}
    for k, P in oof.items():
        for t in (0.9, 0.95, 0.98):
            plan = choose_threshold(P[ok].max(1), P[ok].argmax(1), T[ok], target_agreement=t, guarantee="estimate")
            out[f"{k}@{t}"] = round(float(plan.est_escalation_rate), 4)
    print(name, json.dumps(out), flush=True)
