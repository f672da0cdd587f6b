"""Measured, not kept: the fast tier's tolerance chosen jointly with the teacher threshold for the least expected
cost, label-free on the pool, against the fixed default (0.2 x (1 - target)) and no fast tier.

The same mpnet-lr student (1,000 random labels), a TF-IDF fast tier distilled on its probabilities over 60% of
the rest, the composite's Learn-then-Test threshold on 1,000 validation rows, measured on the documents outside
the pool ("oracle_escalated": the least share to escalate there for the target, knowing the teacher's labels: the
cascade's quality without the threshold's sampling noise). Cost per document, in teacher calls: escalated + r x
read by the accurate student, for r = accurate-student cost / teacher cost per document (0.03: a local 1.5B teacher
against mpnet on the same CPUs; 0.0025: an API teacher at ~$5e-5 a call against mpnet at $0.10 per machine-hour).

The choice ("auto r=..."): for each candidate share, the keep threshold the job would use (out of fold over the
pool), then the escalations Learn-then-Test on 1,000 rows would need if the accurate student's probabilities were
the chance of agreeing with the teacher (for a document the fast tier keeps: the chance of the fast tier's label),
plus r x the documents the accurate student still reads. No validation label is read, so the threshold keeps its
guarantee. Results: benchmarks/results/label/fast_tier/by_cost.txt.

    python benchmarks/explore/label_fast_cost.py 0.95 ag_news sst2_llama3 banking77 trec6 mr_chatgpt
    python benchmarks/explore/label_fast_cost.py 0.9 ag_news sst2_llama3
"""
import json
import sys

import numpy as np
from _common import lr_proba, recorded_mpnet
from sklearn.model_selection import KFold

from thrifty.labelling.thresholds import binomial_p_value, ltt_threshold
from thrifty.labelling.tiers import FOLDS, FastTier, cascade_scores, keep_threshold
from thrifty.students import full_proba

RATIOS = (0.03, 0.0025)
SHARES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def expected_escalation(score, q, target, n_val=None, delta=0.1):
    """The share to escalate, lowest score first, for the target when a kept document agrees with probability q;
    with n_val, as Learn-then-Test on n_val rows would (its binomial test on the expected disagreements)."""
    n = len(score)
    qs = q[np.argsort(score, kind="stable")]
    loss = np.r_[np.cumsum((1.0 - qs)[::-1])[::-1], 0.0] / n
    if n_val is None:
        ok = loss <= 1.0 - target + 1e-12
    else:
        ok = binomial_p_value(np.floor(loss * n_val + 1e-9).astype(int), n_val, 1.0 - target) <= delta
    return float(np.flatnonzero(ok).min()) / n


def out_of_fold(tier, texts, acc):
    """The fast tier's 5-fold out-of-fold probabilities over the pool, as FastTier.fit computes them."""
    X = tier.features_.transform(texts)
    soft, oof = tier._targets(acc), np.zeros(acc.shape)
    for tr, te in KFold(FOLDS, shuffle=True, random_state=tier.seed).split(np.arange(len(texts))):
        oof[te] = full_proba(tier._student().fit(X[tr], soft[tr]), X[te], acc.shape[1])
    return oof


def by_cost(tier, oof, acc, target, r, n_val):
    """The tier with the share of least expected cost (label-free), and that share."""
    agree, rows, best = oof.argmax(1) == acc.argmax(1), np.arange(len(oof)), None
    for share in SHARES:
        thr = keep_threshold(oof.max(1), agree, share * (1 - target))
        label, score, kept = cascade_scores(oof, thr, acc)
        cost = expected_escalation(score, acc[rows, label], target, n_val) + r * (1 - kept.mean())
        if best is None or cost < best[0] - 1e-12:
            best = (cost, share, thr)
    tier.threshold_ = best[2]
    return tier, best[1]


if __name__ == "__main__":
    target = float(sys.argv[1])
    for name in sys.argv[2:]:
        task, texts, T, X, ok = recorded_mpnet(name)
        res: dict = {}
        for seed in (0, 1, 2):
            perm = np.random.default_rng(seed).permutation(ok)
            val, train = perm[:1000], perm[1000:2000]
            pool = perm[1000 : 1000 + int(0.6 * (len(perm) - 1000))]
            rest = perm[1000 + len(pool) :]
            P = lr_proba(X, T, train, task.n_labels)

            def run(tier):
                if tier is None:
                    ch = ltt_threshold(P[val].max(1), P[val].argmax(1), T[val], target, 0.1)
                    oracle = expected_escalation(P[rest].max(1), (P[rest].argmax(1) == T[rest]).astype(float), target)
                    return float(np.mean(P[rest].max(1) < ch.threshold)), 0.0, None, oracle
                lab_v, sc_v, _ = cascade_scores(tier.predict_proba([texts[i] for i in val]), tier.threshold_, P[val])
                ch = ltt_threshold(sc_v, lab_v, T[val], target, 0.1)
                lab, sc, kept = cascade_scores(tier.predict_proba([texts[i] for i in rest]), tier.threshold_, P[rest])
                realised = float(np.mean(np.where(sc < ch.threshold, T[rest], lab) == T[rest]))
                oracle = expected_escalation(sc, (lab == T[rest]).astype(float), target)
                return float(np.mean(sc < ch.threshold)), float(kept.mean()), realised, oracle

            pool_texts = [texts[i] for i in pool]
            fixed = FastTier("tfidf-lr", tolerance=0.2 * (1 - target), seed=seed).fit(pool_texts, P[pool])
            oof = out_of_fold(fixed, pool_texts, P[pool])
            arms, shares = {"none": None, "fixed 0.2": fixed}, {}
            for r in RATIOS:
                tier = FastTier("tfidf-lr", tolerance=0.2 * (1 - target), seed=seed).fit(pool_texts, P[pool])
                arms[f"auto r={r}"], shares[f"auto r={r}"] = by_cost(tier, oof, P[pool], target, r, len(val))
            for arm, tier in arms.items():
                esc, kept, realised, oracle = run(tier)
                d = res.setdefault(arm, {})
                for k, v in (("oracle_escalated", oracle), ("escalated", esc), ("kept", kept), ("realised", realised),
                             ("share", shares.get(arm))):
                    if v is not None:
                        d.setdefault(k, []).append(v)
                for r in RATIOS:
                    d.setdefault(f"cost r={r}", []).append(esc + r * (1 - kept))
        out = {a: {k: [round(float(np.mean(v)), 4), [round(x, 3) for x in v]] for k, v in d.items()}
               for a, d in res.items()}
        print(name, target, json.dumps(out), flush=True)
