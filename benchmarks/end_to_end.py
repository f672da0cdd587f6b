"""End to end: `thrifty label` on every shared dataset with a real recorded teacher.

For each dataset (the recorded teacher behind the ledger, priced at a nominal gpt-4o-mini
rate so dollars mean something; few-shot rows and unrecorded rows taken out), each seed and
each target agreement, the label job's own pieces are run as the job runs them: uniform audit
and validation samples (`draw_samples`), a `Learner` buying training labels batch by batch,
the cost projection after each round and the stopping rule (`stopping_round`, patience 2 and 4),
the Learn-then-Test threshold on validation, the cascade over every document and the audit
estimate. The learner does not depend on the target, so it runs once per seed to the label
cap and the stopping rule is replayed for each target on the same rounds: identical to
three separate runs, at a third of the cost. Because the teacher is a recording, the final
labels are compared with the teacher on every document (realised agreement) and with gold.

In the same run: the baseline of today (`distill --budget 500` + `predict --cascade`: 400
M-RARU training labels, point-estimate threshold on 100 validation rows), random
selection with the same student and rule, variants (`soft`, `self-train`, the label cap
instead of the stopping rule), and the all-labels ceiling (5-fold cross-fitted student on
every teacher label; threshold chosen on all out-of-fold rows).

    python benchmarks/end_to_end.py --out benchmarks/results/label --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from thrifty.bench.datasets import load_dataset, make_bench_teacher
from thrifty.cascade import choose_threshold
from thrifty.features import make_features
from thrifty.labelling.job import LabelConfig, audit_estimate, draw_samples, escalation_for_target
from thrifty.labelling.learner import Learner
from thrifty.labelling.projection import SCALE_1E6, project, stopping_round
from thrifty.students import full_proba, make_student
from thrifty.teachers.ledger import CachedTeacher, Ledger

DATASETS = ["mr_chatgpt", "gwsd_gpt4o", "sst2_llama3", "ag_news", "trec6", "banking77"]
TARGETS = [0.90, 0.95, 0.98]
EXTRA = ("soft", "self_train")  # costlier variants: only on --extra-seeds


def realised(final: np.ndarray, teacher: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Agreement with the teacher over every document it answered, and gold accuracy of the labels."""
    t_ok, g_ok = teacher >= 0, gold >= 0
    return {"agreement": float(np.mean(final[t_ok] == teacher[t_ok])),
            "gold_accuracy": float(np.mean(final[g_ok] == gold[g_ok])) if g_ok.any() else None}


def cascade_outcome(proba, thr, known, teacher, gold, n_fixed_calls, n):
    """Final labels when every known document keeps the teacher's label and the rest go through the cascade."""
    conf, pred = proba.max(1), proba.argmax(1)
    esc = (~known) & (conf < thr)
    final = pred.copy()
    take = (known | esc) & (teacher >= 0)
    final[take] = teacher[take]
    r = realised(final, teacher, gold)
    n_esc = int(esc.sum())
    rate = n_esc / max(1, int((~known).sum()))
    return {**r, "escalations": n_esc, "escalation_rate": rate, "calls": n_fixed_calls + n_esc,
            "calls_pct": 100 * (n_fixed_calls + n_esc) / n}


def run_variant(task, teacher, texts, X, T, G, seed, cfg: LabelConfig, strategy, soft, self_train, max_train):
    """One seed of the label job's learning half, run to the label cap; returns per-round records."""
    n = len(texts)
    ledger = Ledger(":memory:")
    cached = CachedTeacher(teacher, ledger, run="bench")
    valid = np.flatnonzero(np.asarray([True] * n))
    rng = np.random.default_rng(seed)
    n_audit, n_val = cfg.sizes(n)
    audit_idx, val_idx = draw_samples(valid, rng, n_audit, n_val)
    known0 = np.zeros(n, dtype=bool)
    known0[audit_idx] = known0[val_idx] = True
    cand = np.setdiff1d(valid, np.concatenate([audit_idx, val_idx]))
    learner = Learner(task, X, texts, cached, cand, rng, classifier="lr", strategy=strategy, batch=cfg.batch,
                      seed_size=cfg.seed_size, soft=soft, self_train=self_train)
    rounds = []
    t0 = time.perf_counter()
    for rnd in learner.rounds():
        known = known0.copy()
        known[learner.train_idx] = True
        rounds.append({"n_train": rnd.n_train, "proba": rnd.proba.astype(np.float32), "known": known,
                       "train_idx": np.asarray(learner.train_idx, dtype=int)})
        if rnd.n_train + cfg.batch > max_train:
            break
    return {"audit_idx": audit_idx, "val_idx": val_idx, "rounds": rounds, "learn_s": time.perf_counter() - t0,
            "n_audit": n_audit, "n_val": n_val, "per_call": float(np.mean([a.usage.cost_usd for a in learner.answers.values()]))}


def evaluate_variant(v, T, G, target, delta, patience, use_cap, final=None):
    """Replay the job's stopping rule and cascade for one target on recorded rounds; ``final(round)`` gives the
    probabilities the cascade uses after the stopping round (default: that round's student)."""
    n = len(T)
    cal = v["val_idx"][T[v["val_idx"]] >= 0]
    calls, choices = [], []
    for r in v["rounds"]:
        rest = np.flatnonzero(~r["known"])
        ch, rate = escalation_for_target(r["proba"], cal, T[cal], rest, target, delta)
        calls.append(project(n, v["n_audit"], v["n_val"], r["n_train"], rate, 1.0).calls)
        choices.append((ch, rate, rest))
    k = len(v["rounds"]) - 1 if use_cap else stopping_round(calls, patience)
    r, (ch, rate, rest) = v["rounds"][k], choices[k]
    if final is not None:
        r = {**r, "proba": final(r)}
        ch, rate = escalation_for_target(r["proba"], cal, T[cal], rest, target, delta)
    fixed = v["n_audit"] + v["n_val"] + r["n_train"]
    out = cascade_outcome(r["proba"], ch.threshold, r["known"], T, G, fixed, n)
    # the audit estimate: the cascade as it would treat the (never seen) audit documents
    a = v["audit_idx"][T[v["audit_idx"]] >= 0]
    conf, pred = r["proba"][a].max(1), r["proba"][a].argmax(1)
    est = audit_estimate(np.where(conf < ch.threshold, T[a], pred), T[a])
    k_known = int(r["known"].sum())
    lo, hi = ((k_known + (n - k_known) * x) / n for x in est["ci95"])
    rate6 = float(np.mean(r["proba"][v["audit_idx"]].max(1) < ch.threshold))  # new documents look like the audit
    p6 = project(SCALE_1E6, v["n_audit"], v["n_val"], r["n_train"], rate6, 1.0)
    return {**out, "met": out["agreement"] >= target, "train": r["n_train"], "audit": v["n_audit"], "val": v["n_val"],
            "threshold": ch.threshold, "est_agreement": (k_known + (n - k_known) * est["agreement"]) / n,
            "est_ci95": [lo, hi], "est_covers": lo <= out["agreement"] <= hi, "escalation_rate_1e6": rate6,
            "new_docs_agreement": est["agreement"],  # the cascade on the audit: uniform documents it never saw
            "pct_1e6": 100 * p6.fraction_of_teacher_everything, "projection_by_round": [round(c) for c in calls],
            "stop_round": k}


def baseline_today(v, T, G, target):
    """`distill --budget 500` then `predict --cascade --target-agreement`: the same learner (M-RARU, 50 random
    seed labels, batches of 50) at 400 training labels + 100 random validation labels, and the point-estimate
    threshold of `thrifty.cascade.choose_threshold` on those 100 rows. No audit; the labelled rows keep the
    teacher's label."""
    n = len(T)
    r = next(r for r in v["rounds"] if r["n_train"] >= 400)
    val = v["val_idx"][:100]
    known = np.zeros(n, dtype=bool)
    known[val] = True
    known[r["known"] & ~_mask(n, v["audit_idx"]) & ~_mask(n, v["val_idx"])] = True  # the training labels
    vi = val[T[val] >= 0]
    plan = choose_threshold(r["proba"][vi].max(1), r["proba"][vi].argmax(1), T[vi], target_agreement=target, guarantee="estimate")
    o = cascade_outcome(r["proba"], plan.threshold, known, T, G, r["n_train"] + 100, n)
    rate6 = float(np.mean(r["proba"][v["audit_idx"]].max(1) < plan.threshold))
    p6 = project(SCALE_1E6, 0, 100, r["n_train"], rate6, 1.0)
    return {**o, "met": o["agreement"] >= target, "pct_1e6": 100 * p6.fraction_of_teacher_everything,
            "train": r["n_train"], "val": 100, "audit": 0}


def ensembled(task, texts, feats, X, T, seed, features):
    """``final(round)`` for evaluate_variant: the label job's ensemble fitted on that round's training labels
    (cached per round: the stopping rule picks the same round for several targets)."""
    from thrifty.labelling.ensemble import Ensemble, ensemble_members

    cache: dict[int, np.ndarray] = {}
    members = ensemble_members(f"{features}-lr")

    def final(r):
        if r["n_train"] not in cache:
            tr = r["train_idx"][T[r["train_idx"]] >= 0]
            cache[r["n_train"]] = Ensemble(members, task.n_labels, seed=seed).fit(texts, tr, T[tr], first=(feats, X)).proba_
        return cache[r["n_train"]]
    return final


def _mask(n: int, idx: np.ndarray) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[idx] = True
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--targets", type=float, nargs="+", default=TARGETS)
    ap.add_argument("--features", default="minilm")
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--variants", nargs="+", default=["mraru", "random", "soft", "self_train", "today", "scale"])
    ap.add_argument("--scale-max", type=int, default=2000,
                    help="The 'scale' variant's validation sample and label cap, each at most this.")
    ap.add_argument("--ensemble", action="store_true",
                    help="Also evaluate the job's final ensemble (labelling/ensemble.py) on the stopping round.")
    ap.add_argument("--extra-seeds", type=int, nargs="+", default=[0], help="Seeds for the soft / self-train variants.")
    ap.add_argument("--extra-datasets", nargs="+", default=["gwsd_gpt4o", "ag_news", "trec6"],
                    help="Datasets for the soft / self-train variants (self-training refits on the pool: slow).")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    cfg = LabelConfig()
    for name in a.datasets:
        path = a.out / f"{name}.json"
        if path.exists():
            print(f"{name}: done already ({path})")
            continue
        t_ds = time.perf_counter()
        data = load_dataset(name)
        setup = make_bench_teacher("recorded", data, price_model="gpt-4o-mini")
        task, corpus = data.task, setup.corpus
        T = np.asarray([task.index(x) if x is not None else -1 for x in setup.answers])
        gold_of = {t: g for t, g in zip(data.corpus.texts, data.corpus.gold or [])}
        G = np.asarray([task.index(gold_of[t]) if gold_of.get(t) in task.labels else -1 for t in corpus.texts])
        t0 = time.perf_counter()
        feats = make_features(a.features)
        feats.fit(corpus.texts)
        X = feats.transform(corpus.texts)
        embed_s = time.perf_counter() - t0
        n = len(corpus)
        has_dist = any(x.probs is not None and 0 < x.probs.max() < 1 for x in setup.teacher.label(corpus.texts[:50]))
        res: dict[str, Any] = {"dataset": name, "n_docs": n, "teacher": setup.teacher.identity(), "features": a.features,
                               "embed_s": embed_s, "teacher_gold_accuracy": realised(T, T, G)["gold_accuracy"],
                               "teacher_abstained": int((T < 0).sum()), "runs": {}}
        # all-labels ceiling: 5-fold cross-fitted student on every teacher label
        from sklearn.model_selection import KFold

        ok = np.flatnonzero(T >= 0)
        oof = np.zeros((n, task.n_labels))
        for tr, te in KFold(5, shuffle=True, random_state=0).split(ok):
            s = make_student("lr").fit(X[ok[tr]], T[ok[tr]])
            oof[ok[te]] = full_proba(s, X[ok[te]], task.n_labels)
        res["ceiling"] = {}
        for t in a.targets:
            plan = choose_threshold(oof[ok].max(1), oof[ok].argmax(1), T[ok], target_agreement=t, guarantee="estimate")
            res["ceiling"][str(t)] = {"escalation_rate": plan.est_escalation_rate,
                                      "student_agreement": plan.student_agreement}
        variants = {"mraru": ("mraru", False, None), "random": ("random", False, None),
                    "soft": ("mraru", True, None), "self_train": ("mraru", False, 0.9)}
        for seed in a.seeds:
            for vname in a.variants:
                if vname == "scale":
                    # as near the settings a 10^6-document job gets by default (audit 400, validation and
                    # training-label cap 5,000 each) as the corpus has room for, at most --scale-max each and
                    # 300 documents left over, run to the label cap: the escalation rate of a large job.
                    cap = min(cfg.train_cap(SCALE_1E6), a.scale_max, (n - 700) // 2)
                    n_val = min(cfg.sizes(SCALE_1E6)[1], a.scale_max, n - 400 - cap - 300)
                    if n_val < 500:
                        continue
                    big = LabelConfig(audit_size=400, val_size=n_val)
                    v = run_variant(task, setup.teacher, corpus.texts, X, T, G, seed, big, "mraru", False, None, cap)
                    for t in a.targets:
                        res["runs"][f"scale@cap|{t}|{seed}"] = evaluate_variant(v, T, G, t, cfg.delta, cfg.patience, use_cap=True)
                    if a.ensemble:  # the job's final student: the log-linear pool, on the same (last) round's labels
                        ens = ensembled(task, corpus.texts, feats, X, T, seed, a.features)
                        for t in a.targets:
                            res["runs"][f"scale+ens@cap|{t}|{seed}"] = evaluate_variant(
                                v, T, G, t, cfg.delta, cfg.patience, use_cap=True, final=ens)
                    print(f"{name} seed {seed} scale (val {n_val}, cap {cap}): {v['learn_s']:.1f}s", flush=True)
                    continue
                if vname == "today" or (vname in EXTRA and (seed not in a.extra_seeds or name not in a.extra_datasets)):
                    continue
                if vname == "soft" and not has_dist:
                    continue  # the recording has no distributions: identical to mraru
                strategy, soft, st = variants[vname]
                v = run_variant(task, setup.teacher, corpus.texts, X, T, G, seed, cfg, strategy, soft, st, a.max_train)
                for t in a.targets:
                    key = f"{vname}|{t}|{seed}"
                    res["runs"][key] = evaluate_variant(v, T, G, t, cfg.delta, 2, use_cap=False)
                    res["runs"][key]["learn_s"] = v["learn_s"]
                    # the same rounds under other stopping rules: the label cap, and a patience of 4 batches
                    res["runs"][f"{vname}@cap|{t}|{seed}"] = evaluate_variant(v, T, G, t, cfg.delta, cfg.patience, use_cap=True)
                    res["runs"][f"{vname}@p4|{t}|{seed}"] = evaluate_variant(v, T, G, t, cfg.delta, 4, use_cap=False)
                    if vname == "mraru":
                        if "today" in a.variants:
                            res["runs"][f"today|{t}|{seed}"] = baseline_today(v, T, G, t)
                        if a.ensemble:
                            ens = ensembled(task, corpus.texts, feats, X, T, seed, a.features)
                            res["runs"][f"{vname}+ens@p4|{t}|{seed}"] = evaluate_variant(
                                v, T, G, t, cfg.delta, 4, use_cap=False, final=ens)
                print(f"{name} seed {seed} {vname}: {v['learn_s']:.1f}s, {len(v['rounds'])} rounds", flush=True)
        res["wall_s"] = time.perf_counter() - t_ds
        path.write_text(json.dumps(res, indent=1, default=float))
        print(f"{name}: {res['wall_s']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
