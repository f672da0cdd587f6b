import sys, json
import numpy as np
from sklearn.linear_model import LogisticRegression
from thrifty.bench.datasets import load_dataset, make_bench_teacher
from thrifty.features import make_features
from thrifty.labelling.job import escalation_for_target

def proba(m, X, k):
    P = np.zeros((len(X), k)); P[:, m.classes_] = m.predict_proba(X); return P
for name in sys.argv[2:]:
    data = load_dataset(name)
    setup = make_bench_teacher("recorded", data, price_model="gpt-4o-mini")
    task, corpus = data.task, setup.corpus
    T = np.asarray([task.index(x) if x is not None else -1 for x in setup.answers])
    k = task.n_labels
    f = make_features(sys.argv[1]); f.fit(corpus.texts); X = np.asarray(f.transform(corpus.texts), dtype=np.float32)
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
