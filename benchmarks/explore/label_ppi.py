"""Could a prediction-powered bound shrink Learn-then-Test's margin? An exploration, not wired into the job.

Learn-then-Test (thresholds.ltt_threshold) bounds the cascade's disagreement rate with an exact binomial test
on the validation rows alone. Prediction-powered inference (Angelopoulos et al., Science 2023; PPI++, 2023)
also reads the student's *predicted* disagreement (1 - its probability, for each document it keeps) over the
unlabelled documents, and uses the labelled rows only to correct that prediction's bias:

    R(t) = lambda * mean_U f_t + mean_val (loss_t - lambda * f_t),   f_t = [score >= t] (1 - p)

unbiased whatever the calibration, with a variance that shrinks as f_t tracks the true loss. Its test is a
normal approximation (not exact), so how often the target is met must be measured, not assumed.

Same setting as label_fast_cost.py: mpnet-lr on 1,000 random teacher labels; then per seed, 100 draws of
--val validation rows from the rest, the other rest documents unlabelled (U, where it is evaluated):
escalation share on U, and how often the realised agreement on U met the target.

    python benchmarks/explore/label_ppi.py --targets 0.9 0.95 --datasets ag_news sst2_llama3 mr_chatgpt trec6
"""
import argparse
import json

import numpy as np
from _common import lr_proba, recorded_mpnet
from scipy.stats import norm

from thrifty.labelling.thresholds import ltt_threshold


def ppi_threshold(s_val, wrong_val, p_val, s_u, p_u, target, delta=0.1):
    """Fixed-sequence test (most escalation first) of R(t) <= 1 - target with PPI++ p-values; the threshold."""
    alpha, n, N = 1.0 - target, len(s_val), len(s_u)
    cands = np.r_[np.unique(s_val), np.inf][::-1]  # escalate everything first, then less and less
    best = np.inf
    for t in cands:
        kv, ku = s_val >= t, s_u >= t
        loss, f, fu = (kv & wrong_val).astype(float), kv * (1 - p_val), ku * (1 - p_u)
        var_f = f.var()
        lam = 0.0 if var_f == 0 else float(np.clip(np.cov(loss, f)[0, 1] / ((1 + n / N) * var_f), 0, 1))
        est = lam * fu.mean() + (loss - lam * f).mean()
        sd = np.sqrt((loss - lam * f).var(ddof=1) / n + lam ** 2 * fu.var(ddof=1) / N)
        pval = (0.0 if est < alpha else 1.0) if sd == 0 else float(norm.sf((alpha - est) / sd))
        if pval > delta:
            break
        best = t
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=float, nargs="+", default=[0.9, 0.95])
    ap.add_argument("--datasets", nargs="+", default=["ag_news", "sst2_llama3", "mr_chatgpt", "trec6"])
    ap.add_argument("--val", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=100)
    a = ap.parse_args()
    for name in a.datasets:
        task, texts, T, X, ok = recorded_mpnet(name)
        res: dict = {}
        for seed in (0, 1, 2):
            perm = np.random.default_rng(seed).permutation(ok)
            train, rest = perm[:1000], perm[1000:]
            P = lr_proba(X, T, train, task.n_labels)
            s, pred = P.max(1), P.argmax(1)
            rng = np.random.default_rng(100 + seed)
            for _ in range(a.draws):
                d = rng.permutation(rest)
                val, u = d[: a.val], d[a.val :]
                for target in a.targets:
                    t_b = ltt_threshold(s[val], pred[val], T[val], target, 0.1).threshold
                    t_p = ppi_threshold(s[val], pred[val] != T[val], s[val], s[u], s[u], target)
                    for arm, t in (("binomial", t_b), ("ppi", t_p)):
                        esc = s[u] < t
                        agree = float(np.mean(np.where(esc, T[u], pred[u]) == T[u]))
                        r = res.setdefault(f"{target}", {}).setdefault(arm, {"escalated": [], "met": []})
                        r["escalated"].append(float(esc.mean()))
                        r["met"].append(agree >= target)
        out = {t: {arm: {k: round(float(np.mean(v)), 4) for k, v in r.items()} for arm, r in d.items()}
               for t, d in res.items()}
        print(name, f"val={a.val}", json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
