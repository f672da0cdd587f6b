"""How well does `thrifty audit` find wrong teacher labels, and what do corrections buy?

On each dataset, for each seed, a random sample of N pool rows plays the labels a run paid for
(the recorded real teacher's answers). The audit ranks them out of fold (MiniLM + logistic
regression, thrifty's default student); we measure:

- precision@50 / @200: the fraction of the top-ranked labels that are wrong against gold, for
  the audit (``both``: student and teacher confidence; ``self``: student only), cleanlab's
  ``find_label_issues`` on the same out-of-fold probabilities (if installed), and random order;
- a simulated reviewer: correct the top 100 (or 100 random) labels with gold, retrain the
  student on all N labels, and score it on test.csv (gold).

    nice -n 10 python benchmarks/audit.py --seeds 3 --n 1000

Writes benchmarks/results/audit/audit.csv (one row per dataset x seed x method) and summary.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from thrifty.report.audit import out_of_fold_proba, suspicion, teacher_distribution
from thrifty.features import make_features
from thrifty.students import full_proba, make_student

DATA = Path("/work/shared/datasets")
OUT = Path(__file__).parent / "results" / "audit"


def load(name: str) -> dict:
    """Pool texts, gold, the recorded teacher (label, confidence, probs) and test set; shot rows excluded."""
    labels = json.loads((DATA / name / "labels.json").read_text())
    labels = labels["labels"] if isinstance(labels, dict) else labels
    labels = [lab if isinstance(lab, str) else lab["name"] for lab in labels]
    with open(DATA / name / "pool.csv", newline="", encoding="utf-8") as f:
        pool = list(csv.DictReader(f))
    K = len(labels)
    if name == "ag_news":
        meta = json.loads((DATA / name / "teacher_qwen2.5-1.5b.json").read_text())
        shots = set(meta.get("shot_rows", []))
        rec = {}
        with open(DATA / name / "teacher_qwen2.5-1.5b.csv", newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                p = json.loads(r["teacher_probs"])
                rec[int(r["row"])] = (r["teacher_label"], float(r["teacher_confidence"]), [p.get(lab, 0.0) for lab in labels])
        rows = [i for i in range(len(pool)) if i in rec and i not in shots and rec[i][0] in labels]
        teacher = [rec[i] for i in rows]
    else:
        rows = [i for i, r in enumerate(pool) if r.get("teacher_label") in labels]
        teacher = [(pool[i]["teacher_label"], float(pool[i]["teacher_confidence"] or "nan"), [np.nan] * K) for i in rows]
    with open(DATA / name / "test.csv", newline="", encoding="utf-8") as f:
        test = list(csv.DictReader(f))
    return {
        "labels": labels, "texts": [pool[i]["text"] for i in rows], "gold": np.array([labels.index(pool[i]["label"]) for i in rows]),
        "y": np.array([labels.index(t[0]) for t in teacher]), "conf": np.array([t[1] for t in teacher]),
        "probs": np.array([t[2] for t in teacher], dtype=float),
        "test_texts": [r["text"] for r in test], "test_gold": np.array([labels.index(r["label"]) for r in test]),
    }


def precision_at(order: np.ndarray, wrong: np.ndarray, k: int) -> float:
    return float(wrong[order[:k]].mean()) if len(order) else float("nan")


def student_accuracy(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, gold: np.ndarray, K: int) -> float:
    clf = make_student("lr").fit(X, y)
    return float((full_proba(clf, Xt, K).argmax(1) == gold).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="ag_news,gwsd_gpt4o")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n", type=int, default=1000, help="paid labels per simulated run")
    ap.add_argument("--features", default="minilm")
    ap.add_argument("--fix", type=int, default=100, help="labels a simulated reviewer corrects")
    ap.add_argument("--summarise", action="store_true", help="only rewrite summary.md from audit.csv")
    args = ap.parse_args()
    if args.summarise:
        with open(OUT / "audit.csv", newline="", encoding="utf-8") as f:
            summarise(list(csv.DictReader(f)), f"{args.features} + LR, {args.n} labels per run, {args.seeds} seeds, "
                      f"reviewer fixes {args.fix}")
        return
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        find_label_issues = None
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.datasets.split(","):
        d = load(name)
        K = len(d["labels"])
        feats = make_features(args.features)
        feats.fit(d["texts"])
        X_all, Xt = feats.transform(d["texts"]), feats.transform(d["test_texts"])
        print(f"{name}: {len(d['y'])} recorded rows, teacher accuracy {np.mean(d['y'] == d['gold']):.3f}", flush=True)
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            idx = rng.choice(len(d["y"]), size=min(args.n, len(d["y"])), replace=False)
            X, y, gold = X_all[idx], d["y"][idx], d["gold"][idx]
            wrong = y != gold
            t0 = time.perf_counter()
            p = out_of_fold_proba(X, y, lambda: make_student("lr"), K, 5, seed)
            oof_s = time.perf_counter() - t0
            q = teacher_distribution(y, K, d["conf"][idx], d["probs"][idx])
            orders = {"audit_both": np.argsort(-suspicion(p, y, q, "both"), kind="stable"),
                      "audit_self": np.argsort(-suspicion(p, y, method="self"), kind="stable"),
                      "random": rng.permutation(len(y))}
            if find_label_issues is not None:
                orders["cleanlab"] = np.asarray(find_label_issues(y, p, return_indices_ranked_by="self_confidence"))
            base = student_accuracy(X, y, Xt, d["test_gold"], K)
            for method, order in orders.items():
                fixed = y.copy()
                fixed[order[: args.fix]] = gold[order[: args.fix]]
                row = {"dataset": name, "seed": seed, "n": len(y), "teacher_wrong": int(wrong.sum()), "method": method,
                       "flagged": len(order), "p_at_50": precision_at(order, wrong, 50),
                       "p_at_200": precision_at(order, wrong, 200), "wrong_in_fix": int(wrong[order[: args.fix]].sum()),
                       "acc_before": base, "acc_after_fix": student_accuracy(X, fixed, Xt, d["test_gold"], K),
                       "oof_s": round(oof_s, 2)}
                results.append(row)
                print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    with open(OUT / "audit.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(results[0]))
        w.writeheader()
        w.writerows(results)
    summarise(results, f"{args.features} + LR, {args.n} labels per run, {args.seeds} seeds, reviewer fixes {args.fix}")


def summarise(results: list[dict], title: str) -> None:
    """Mean ± std over seeds per dataset x method, written to summary.md."""
    lines = [f"# Audit benchmark ({title})", "",
             "| dataset | method | flagged | precision@50 | precision@200 | wrong among the 100 fixed | gold acc before | after fix |",
             "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["dataset"] for r in results):
        for method in dict.fromkeys(r["method"] for r in results):
            rs = [r for r in results if r["dataset"] == name and r["method"] == method]
            if not rs:
                continue
            m = {k: (np.mean([float(r[k]) for r in rs]), np.std([float(r[k]) for r in rs])) for k in
                 ("flagged", "p_at_50", "p_at_200", "wrong_in_fix", "acc_before", "acc_after_fix")}
            lines.append(f"| {name} | {method} | {m['flagged'][0]:.0f} | {m['p_at_50'][0]:.3f} ± {m['p_at_50'][1]:.3f} | "
                         f"{m['p_at_200'][0]:.3f} ± {m['p_at_200'][1]:.3f} | {m['wrong_in_fix'][0]:.1f} | "
                         f"{m['acc_before'][0]:.4f} | {m['acc_after_fix'][0]:.4f} ± {m['acc_after_fix'][1]:.4f} |")
    lines += ["", "precision@K is over the first min(K, flagged) labels: cleanlab's `find_label_issues` returns only the "
              "labels it flags, so when it flags fewer than K its precision is over fewer labels, and its reviewer "
              "corrects only the flagged ones."]
    (OUT / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

if __name__ == "__main__":
    main()
