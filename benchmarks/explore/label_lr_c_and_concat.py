import sys, json
import numpy as np
from sklearn.linear_model import LogisticRegression
from thrifty.bench.datasets import load_dataset, make_bench_teacher
from thrifty.features import make_features
from thrifty.labelling.job import escalation_for_target
def proba(m, X, k):
    P = np.zeros((len(X), k)); P[:, m.classes_] = m.predict_proba(X); return P
def feats(name, texts):
    f = make_features(name); f.fit(texts); return np.asarray(f.transform(texts), dtype=np.float32)
for name in sys.argv[1:]:
    data = load_dataset(name)
    setup = make_bench_teacher("recorded", data, price_model="gpt-4o-mini")
    task, corpus = data.task, setup.corpus
    T = np.asarray([task.index(x) if x is not None else -1 for x in setup.answers]); k = task.n_labels
    Xm = feats("mpnet", corpus.texts); Xc = np.hstack([Xm, feats("minilm", corpus.texts)])
    ok = np.flatnonzero(T >= 0); out = {}
    for seed in [0, 1, 2, 3]:
        perm = np.random.default_rng(seed).permutation(ok)
        nv = min(1000, len(ok) // 4); val = perm[:nv]; pool = perm[nv:]
        test = pool[-len(pool) // 3:]; tr = pool[:min(1000, len(pool) - len(test))]
        for fn, X in (("mpnet", Xm), ("concat", Xc)):
            for C in ([0.3, 1, 3, 10] if fn == "mpnet" else [1, 10]):
                P = proba(LogisticRegression(C=C, max_iter=2000).fit(X[tr], T[tr]), X, k)
                _, rate = escalation_for_target(P, val, T[val], test, 0.95, 0.1)
                out.setdefault(f"{fn} C={C}", []).append(rate)
    print(name, len(tr), nv, {a: round(float(np.mean(b)), 3) for a, b in out.items()}, flush=True)
