"""Does another escalation score (or a combined student) need fewer escalations for the same Learn-then-Test
guarantee, with the SAME training labels?

Per dataset and seed: a uniform validation sample (min(2,000, 25% of the documents), the rows LTT uses), a
disjoint uniform "unseen" slice (25%, whose teacher labels only measure the realised escalation and agreement)
and random training labels (1,000 and 2,000, capped by what is left). Every score below is fixed before LTT
sees the validation rows: anything fitted is fitted on the training labels only (out-of-fold predictions
where a model of the student's errors is needed). Candidates (``pred`` = the label the student answers):

- ``mpnet``: mpnet-lr (C=10), max probability (the job's score today);
- ``ens2`` / ``ens3``: mean of the probabilities of mpnet-lr and minilm-lr (and tfidf-lr), max probability;
- ``stack``: a combined student, multinomial LR (C=1) on the log out-of-fold probabilities of mpnet-lr, minilm-lr,
  tfidf-lr and the kNN label shares below; ``pool``: the same four combined by a log-linear pool
  ``softmax(sum_i a_i log P_i)``, 4 weights fitted by out-of-fold log-loss (a stack that cannot overfit many classes);
- ``cls-cal``: mpnet-lr, P(correct) from a Platt fit of "OOF prediction == teacher" on logit(max prob), per
  predicted class (pooled fit for classes with < 30 OOF rows or one outcome);
- ``corr``: a logistic correctness model on out-of-fold mpnet and minilm predictions of the training labels
  ([max prob, margin, entropy, predicted-class one-hot, minilm's prob of that class, minilm's max prob,
  mpnet == minilm]), its P(correct) the score, mpnet's label the answer; ``corr-ens``: the same on top of
  ``ens2`` (its label, its features + mpnet/minilm agreement);
- ``knn``: 0.5 * mpnet-lr + 0.5 * label shares of the 10 nearest training documents (cosine, mpnet);
  ``corr-knn``: ``corr``'s features + the kNN share of the predicted label (OOF within the training labels);
  ``corr-pool``: a correctness model on top of ``pool`` (its label; its features + mpnet's and minilm's
  agreement with it + the kNN share of its label); ``pool-nominilm`` / ``corr-pool-nominilm``: the same without
  minilm-lr (mpnet-lr, tfidf-lr and kNN only: no second embedding pass over the corpus).

TF-IDF's vocabulary is fitted on every text (no labels). ``oracle`` (last table): the least escalation that meets
0.95 on the unseen slice itself with no bound, i.e. how well each score ranks the student's mistakes.

Prints one JSON line per (dataset, seed, labels) and, at the end, the tables (escalation on the unseen slice,
runs whose unseen agreement met the target, median over datasets; the paired change vs ``mpnet``); ``--seeds N``
runs seeds 0..N-1 (default 3); ``--tables FILE`` re-prints the tables from the JSON lines of an earlier run::

    nice -n 10 env OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_scores.py \
        mr_chatgpt gwsd_gpt4o sst2_llama3 ag_news trec6 banking77 --seeds 10
"""
import json
import sys

import numpy as np
from _common import embed, proba, recorded
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from thrifty.features import make_features
from thrifty.labelling.thresholds import ltt_threshold

TARGETS, DELTA, SIZES, FOLDS, K = (0.90, 0.95, 0.98), 0.1, (1000, 2000), 5, 10
SEEDS = int(sys.argv[sys.argv.index("--seeds") + 1]) if "--seeds" in sys.argv else 3  # seeds 0 .. SEEDS-1
CANDIDATES = ["mpnet", "ens2", "ens3", "stack", "pool", "cls-cal", "corr", "corr-ens", "knn", "corr-knn", "corr-pool",
              "pool-nominilm", "corr-pool-nominilm"]


def lr(X, y, k, rows, C=10.0):
    m = LogisticRegression(C=C, max_iter=1000).fit(X[rows], y[rows])
    return lambda idx: proba(m, X[idx], k)


def oof(X, y, k, tr, seed):
    """Out-of-fold probabilities of the training rows (each from a model that did not see it)."""
    P = np.zeros((len(tr), k))
    for a, b in KFold(FOLDS, shuffle=True, random_state=seed).split(tr):
        P[b] = lr(X, y, k, tr[a])(tr[b])
    return P


def knn_share(Z, y, k, query, ref):
    """Label shares among the K nearest ``ref`` rows (cosine on unit-norm ``Z``) of each ``query`` row."""
    S = Z[query] @ Z[ref].T
    nn = np.argpartition(-S, K, axis=1)[:, :K]
    out = np.zeros((len(query), k))
    np.add.at(out, (np.repeat(np.arange(len(query)), K), y[ref][nn].ravel()), 1.0 / K)
    return out


def log_pool(Ps, y):
    """A log-linear pool ``softmax(sum_i a_i log P_i)`` with one weight ``a_i >= 0`` per student, fitted by the
    log-loss of the training rows' out-of-fold probabilities ``Ps`` (a stack with 4 parameters, whatever k)."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    L = np.stack([np.log(np.clip(P, 1e-6, 1)) for P in Ps])
    nll = lambda a: -np.mean(log_softmax(np.tensordot(np.exp(a), L, 1), axis=1)[np.arange(len(y)), y])  # noqa: E731
    a = np.exp(minimize(nll, np.zeros(len(Ps)), method="Nelder-Mead", options={"maxiter": 400}).x)

    def apply(Qs):
        from scipy.special import softmax
        return softmax(np.tensordot(a, np.stack([np.log(np.clip(Q, 1e-6, 1)) for Q in Qs]), 1), axis=1)
    return apply


def stats(P):
    s = np.sort(P, axis=1)
    ent = -np.sum(P * np.log(np.clip(P, 1e-12, 1)), axis=1)
    return s[:, -1], s[:, -1] - s[:, -2], ent


def feats(Pa, Pb, k, extra=()):
    """Correctness-model features of the label ``argmax Pa``: Pa's max prob, margin, entropy, its class one-hot,
    Pb's prob of that label, Pb's max prob, whether Pb agrees (plus ``extra`` columns)."""
    pred = Pa.argmax(1)
    mx, mg, en = stats(Pa)
    cols = [mx, mg, en, Pb[np.arange(len(Pb)), pred], Pb.max(1), (Pb.argmax(1) == pred).astype(float), *extra]
    return np.column_stack(cols + [np.eye(k)[pred]])


def correctness(F_tr, ok_tr, F):
    """P(student == teacher) from a logistic model fitted on the training rows' out-of-fold features."""
    if ok_tr.all() or not ok_tr.any():
        return np.full(len(F), float(ok_tr.mean()))
    sc = StandardScaler().fit(F_tr)
    m = LogisticRegression(C=1.0, max_iter=2000).fit(sc.transform(F_tr), ok_tr)
    return m.predict_proba(sc.transform(F))[:, 1]


def class_platt(conf_tr, pred_tr, ok_tr, conf, pred):
    """Per-predicted-class Platt scaling of the max probability into P(correct) (pooled where a class is thin)."""
    z = lambda c: np.log(np.clip(c, 1e-6, 1 - 1e-6) / np.clip(1 - c, 1e-6, 1))[:, None]  # noqa: E731
    pooled = LogisticRegression(C=1.0).fit(z(conf_tr), ok_tr) if 0 < ok_tr.mean() < 1 else None
    out = pooled.predict_proba(z(conf))[:, 1] if pooled else np.full(len(conf), float(ok_tr.mean()))
    for c in np.unique(pred):
        sel, fit = pred == c, pred_tr == c
        if fit.sum() >= 30 and 0 < ok_tr[fit].mean() < 1:
            out[sel] = LogisticRegression(C=1.0).fit(z(conf_tr[fit]), ok_tr[fit]).predict_proba(z(conf[sel]))[:, 1]
    return out


def scores(Xm, Xn, Xt, Zm, T, k, tr, ev, seed):
    """``{candidate: (score, pred)}`` over the rows ``ev`` (validation + unseen), all fitted on ``tr`` only."""
    y = T
    Pm, Pn, Pt = lr(Xm, y, k, tr)(ev), lr(Xn, y, k, tr)(ev), lr(Xt, y, k, tr)(ev)
    Om, On, Ot = oof(Xm, y, k, tr, seed), oof(Xn, y, k, tr, seed), oof(Xt, y, k, tr, seed)
    ok_m = Om.argmax(1) == y[tr]
    E, Oe = (Pm + Pn) / 2, (Om + On) / 2
    E3 = (Pm + Pn + Pt) / 3
    out = {"mpnet": (Pm.max(1), Pm.argmax(1)), "ens2": (E.max(1), E.argmax(1)), "ens3": (E3.max(1), E3.argmax(1))}
    out["cls-cal"] = (class_platt(Om.max(1), Om.argmax(1), ok_m, Pm.max(1), Pm.argmax(1)), Pm.argmax(1))
    out["corr"] = (correctness(feats(Om, On, k), ok_m, feats(Pm, Pn, k)), Pm.argmax(1))
    out["corr-ens"] = (correctness(feats(Oe, Om, k, [On.argmax(1) == Om.argmax(1)]), Oe.argmax(1) == y[tr],
                                   feats(E, Pm, k, [Pn.argmax(1) == Pm.argmax(1)])), E.argmax(1))
    Kev = knn_share(Zm, y, k, ev, tr)
    Km = 0.5 * Pm + 0.5 * Kev
    out["knn"] = (Km.max(1), Km.argmax(1))
    Ktr = np.zeros((len(tr), k))  # kNN shares of the training rows from the other folds
    for a, b in KFold(FOLDS, shuffle=True, random_state=seed).split(tr):
        Ktr[b] = knn_share(Zm, y, k, tr[b], tr[a])
    kshare = lambda Kx, P: Kx[np.arange(len(P)), P.argmax(1)]  # noqa: E731
    logit = lambda *Ps: np.hstack([np.log(np.clip(P, 1e-6, 1)) for P in Ps])  # noqa: E731
    stack = LogisticRegression(C=1.0, max_iter=2000).fit(logit(Om, On, Ot, Ktr), y[tr])
    Ps = proba(stack, logit(Pm, Pn, Pt, Kev), k)
    out["stack"] = (Ps.max(1), Ps.argmax(1))
    pool = log_pool([Om, On, Ot, Ktr], y[tr])
    Pp, Op = pool([Pm, Pn, Pt, Kev]), pool([Om, On, Ot, Ktr])
    out["pool"] = (Pp.max(1), Pp.argmax(1))
    F_tr = feats(Op, Om, k, [On.argmax(1) == Op.argmax(1), kshare(Ktr, Op)])
    F_ev = feats(Pp, Pm, k, [Pn.argmax(1) == Pp.argmax(1), kshare(Kev, Pp)])
    out["corr-pool"] = (correctness(F_tr, Op.argmax(1) == y[tr], F_ev), Pp.argmax(1))
    pool3 = log_pool([Om, Ot, Ktr], y[tr])  # the same without MiniLM (no second embedding pass over the corpus)
    Pp, Op = pool3([Pm, Pt, Kev]), pool3([Om, Ot, Ktr])
    out["pool-nominilm"] = (Pp.max(1), Pp.argmax(1))
    F_tr = feats(Op, Om, k, [kshare(Ktr, Op)])
    F_ev = feats(Pp, Pm, k, [kshare(Kev, Pp)])
    out["corr-pool-nominilm"] = (correctness(F_tr, Op.argmax(1) == y[tr], F_ev), Pp.argmax(1))
    out["corr-knn"] = (correctness(feats(Om, On, k, [kshare(Ktr, Om)]), ok_m, feats(Pm, Pn, k, [kshare(Kev, Pm)])),
                       Pm.argmax(1))
    return out


def oracle(score, agree, target):
    """The least escalation that meets ``target`` on these very rows (the point estimate, no guarantee): how well
    the score ranks the student's mistakes, apart from what the bound costs."""
    o = np.argsort(-score, kind="stable")
    err, kept = np.cumsum(~agree[o]), np.arange(1, len(o) + 1)
    good = err <= (1 - target) * len(o)
    return 1.0 - (kept[good].max() if good.any() else 0) / len(o)


def run(name):
    task, texts, T = recorded(name)
    k = task.n_labels
    Xm, Xn, Xt = embed("mpnet", texts), embed("minilm", texts), make_features("tfidf").fit(texts)
    Xt = Xt.transform(texts)
    Zm = Xm / np.linalg.norm(Xm, axis=1, keepdims=True)
    ok = np.flatnonzero(T >= 0)
    rows = []
    for seed in range(SEEDS):
        perm = np.random.default_rng(seed).permutation(ok)
        nv = min(2000, len(ok) // 4)
        nt = len(ok) // 4
        val, unseen, trainable = perm[:nv], perm[nv:nv + nt], perm[nv + nt:]
        for n in sorted({min(s, len(trainable)) for s in SIZES}):
            tr = trainable[:n]
            ev = np.concatenate([val, unseen])
            iv, iu = np.arange(nv), np.arange(nv, nv + len(unseen))
            row = {"dataset": name, "seed": seed, "labels": int(n), "val": int(nv), "unseen": int(len(unseen))}
            for cand, (s, p) in scores(Xm, Xn, Xt, Zm, T, k, tr, ev, seed).items():
                row[cand] = {"acc": round(float(np.mean(p[iu] == T[unseen])), 4),
                             "oracle0.95": round(oracle(s[iu], p[iu] == T[unseen], 0.95), 4)}
                for t in TARGETS:
                    ch = ltt_threshold(s[iv], p[iv], T[val], t, DELTA)
                    esc = s[iu] < ch.threshold
                    agree = float(np.mean(esc | (p[iu] == T[unseen])))
                    row[cand][str(t)] = [round(float(esc.mean()), 4), round(agree, 4)]
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def table(rows, target, oracle_only=False):
    t = str(target)
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    title = ("the oracle: least escalation meeting the target on the unseen slice itself (no bound; mean of seeds)"
             if oracle_only else "escalation on the unseen slice (mean of seeds), runs met (unseen agreement >= target)")
    lines = [f"\n### target {target}: {title}\n",
             "| dataset | labels | " + " | ".join(CANDIDATES) + " |", "|---|---|" + "---|" * len(CANDIDATES)]
    per_size: dict = {}
    for name in names:
        for n in sorted({r["labels"] for r in rows if r["dataset"] == name}):
            rs = [r for r in rows if r["dataset"] == name and r["labels"] == n]
            cells = []
            for c in CANDIDATES:
                e = np.mean([r[c]["oracle" + t] if oracle_only else r[c][t][0] for r in rs])
                met = sum(r[c][t][1] >= target for r in rs)
                cells.append(f"{100 * e:.1f}%" + ("" if oracle_only else f" ({met}/{len(rs)})"))
                size = "1,000" if n <= 1000 else "2,000"  # the small sets cap both sizes at what they have
                per_size.setdefault(size, {}).setdefault(c, {})[name] = e
            lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    for size, d in per_size.items():
        # a dataset without a 2,000 row contributes its largest size to the "2,000" median
        full = {c: {**per_size["1,000"][c], **d[c]} if size == "2,000" else d[c] for c in CANDIDATES}
        lines.append(f"| **median** | {size} | " + " | ".join(f"{100 * np.median(list(full[c].values())):.1f}%"
                                                            for c in CANDIDATES) + " |")
    return "\n".join(lines)


def gains(rows, target=0.95):
    """Paired (same seed, same labels) change in escalation vs ``mpnet``: mean, standard error, runs cheaper."""
    t, cands = str(target), CANDIDATES[1:]
    lines = [f"\n### target {target}: escalation minus mpnet's, paired by run (points; mean +- s.e., runs cheaper)\n",
             "| dataset | labels | " + " | ".join(cands) + " |", "|---|---|" + "---|" * len(cands)]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        for n in sorted({r["labels"] for r in rows if r["dataset"] == name}):
            rs = [r for r in rows if r["dataset"] == name and r["labels"] == n]
            cells = []
            for c in cands:
                d = 100 * np.array([r[c][t][0] - r["mpnet"][t][0] for r in rs])
                se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
                cells.append(f"{d.mean():+.1f} +- {se:.1f} ({int(np.sum(d < 0))}/{len(d)})")
            lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def met(rows):
    """Over every run: how often the unseen slice's agreement reached the target, and its mean."""
    lines = ["\n### every run: unseen agreement >= target (runs), mean unseen agreement\n",
             "| target | " + " | ".join(CANDIDATES) + " |", "|---|" + "---|" * len(CANDIDATES)]
    for target in TARGETS:
        cells = [f"{sum(r[c][str(target)][1] >= target for r in rows)}/{len(rows)}, "
                 f"{np.mean([r[c][str(target)][1] for r in rows]):.3f}" for c in CANDIDATES]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if "--tables" in sys.argv:  # re-tabulate the JSON lines a run printed
        allrows = [json.loads(x) for x in open(sys.argv[sys.argv.index("--tables") + 1]) if x.startswith("{")]
    else:
        names = [a for i, a in enumerate(sys.argv[1:], 1) if a != "--seeds" and sys.argv[i - 1] != "--seeds"]
        allrows = [r for name in names for r in run(name)]
    for target in TARGETS:
        print(table(allrows, target))
    print(met(allrows))
    print(table(allrows, 0.95, oracle_only=True))
    for target in TARGETS:
        print(gains(allrows, target))
