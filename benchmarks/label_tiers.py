"""The fast tier of `thrifty label`: how much accurate-student time it saves, and what it costs in escalations.

On every shared dataset with a real recorded teacher (replayed through the ledger), each seed and
target, the real `LabelJob` runs twice with the same settings and a selection pool smaller than the
corpus (`--pool-share` of it), so that the rest of the corpus goes through the cascade only:
once with the fast tier (`fast_student="auto"`: TF-IDF + LR distilled on the accurate student's
probabilities over the pool) and once without (`"none"`: every document outside the pool reads the
accurate student). Both runs buy the same training labels (the learner does not depend on the fast
tier), so the difference is the fast tier alone.

Reported per run: the share of the documents outside the pool the fast tier answered, escalations
with and without it, realised agreement with the teacher over every document and over the documents
by the fast tier (the recording answers every one), and the student-tier time at 10^6 documents
projected from docs/s measured in this process: the fast tier's own predict rate, and the accurate
features' rate on texts no cache holds.

    OPENBLAS_NUM_THREADS=1 python benchmarks/label_tiers.py --out benchmarks/results/label/tiers
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from thrifty.bench.datasets import load_dataset, make_bench_teacher
from thrifty.labelling import LabelConfig, LabelJob

DATASETS = ["mr_chatgpt", "gwsd_gpt4o", "sst2_llama3", "ag_news", "trec6", "banking77"]


def accurate_docs_per_s(student: str, texts: list[str], n: int = 256) -> float:
    """Docs/s of the accurate student's features on ``n`` texts no cache holds (each gets a unique prefix)."""
    from thrifty.config import split_student
    from thrifty.features import make_features

    feats, params, _, _ = split_student(student)
    fresh = [f"[{time.time_ns()}-{i}] {t}" for i, t in enumerate(texts[:n])]
    f = make_features(feats, **params)
    f.fit(fresh)
    t0 = time.perf_counter()
    f.transform(fresh)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--targets", type=float, nargs="+", default=[0.95])
    ap.add_argument("--student", default="mpnet-lr")
    ap.add_argument("--pool-share", type=float, default=0.6, help="Selection pool as a share of the corpus.")
    ap.add_argument("--fast-tolerance", type=float, default=LabelConfig.fast_tolerance)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for name in a.datasets:
        path = a.out / f"{name}.json"
        if path.exists():
            print(f"{name}: done already ({path})")
            continue
        data = load_dataset(name)
        setup = make_bench_teacher("recorded", data, price_model="gpt-4o-mini")
        corpus, task = setup.corpus, data.task
        T = np.asarray(setup.answers, dtype=object)
        answered = np.asarray([x is not None for x in T])
        n = len(corpus)
        acc_rate = accurate_docs_per_s(a.student, list(corpus.texts))
        res = {"dataset": name, "n_docs": n, "student": a.student, "pool_share": a.pool_share,
               "fast_tolerance": a.fast_tolerance, "accurate_docs_per_s_uncached": acc_rate, "runs": []}
        for target in a.targets:
            for seed in a.seeds:
                row: dict = {"target": target, "seed": seed}
                for fast in ("auto", "none"):
                    cfg = LabelConfig(target_agreement=target, student=a.student, seed=seed, fast_student=fast,
                                      pool_size=int(a.pool_share * n), fast_tolerance=a.fast_tolerance)
                    t0 = time.perf_counter()
                    r = LabelJob(task, setup.teacher, cfg).run(corpus)
                    wall = time.perf_counter() - t0
                    s = r.summary
                    lab = np.asarray(r.labels, dtype=object)
                    tier = np.asarray(r.tier)
                    fm = (tier == "fast") & answered
                    row[fast] = {
                        "wall_s": wall, "escalations": s["teacher_calls"]["escalations"],
                        "training": s["teacher_calls"]["training"], "calls_pct": s["teacher_calls"]["pct_of_corpus"],
                        "escalation_rate_new_docs": s["escalation_rate_new_docs"], "threshold": s["threshold"]["threshold"],
                        "realised": float(np.mean(lab[answered] == T[answered])), "outside": s["pool"]["outside"],
                        "fast_tier_agreement": float(np.mean(lab[fm] == T[fm])) if fm.any() else None,
                        "fast_docs": int((tier == "fast").sum()), "tiers": s["tiers"],
                        "pct_1e6": 100 * s["projection"]["at_1e6"]["fraction_of_teacher_everything"],
                        "audit_estimate": s["estimated_agreement"]["cascade_on_audit"]["agreement"]}
                f, b = row["auto"], row["none"]
                fast_rate = f["tiers"]["fast"]["predict_docs_per_s"] if "fast" in f["tiers"] else None
                outside = max(1, f["outside"])
                kept_share = f["tiers"]["fast"]["outside_docs_answered"] / outside if "fast" in f["tiers"] else 0.0
                if fast_rate:  # student-tier seconds at 10^6 documents, from the measured rates
                    row["student_s_1e6"] = {"with_fast": 1e6 / fast_rate + (1 - kept_share) * 1e6 / acc_rate,
                                            "without": 1e6 / acc_rate}
                row["fast_share_outside"] = kept_share
                res["runs"].append(row)
                print(f"{name} t={target} seed {seed}: fast kept {100 * kept_share:.1f}% of {f['outside']} outside; "
                      f"escalations {f['escalations']} vs {b['escalations']}; new-doc rate "
                      f"{100 * f['escalation_rate_new_docs']:.1f}% vs {100 * b['escalation_rate_new_docs']:.1f}%; "
                      f"realised {f['realised']:.4f} vs {b['realised']:.4f}", flush=True)
        path.write_text(json.dumps(res, indent=1, default=float))
    (a.out / "report.md").write_text(report(a.out), encoding="utf-8")


def report(out: Path) -> str:
    """One row per dataset and target: means over seeds, with the fast tier (auto) vs without (none)."""
    lines = ["| dataset (docs, pool) | target | fast tier answered, outside the pool | escalations: with / without | "
             "new-doc escalation rate: with / without | realised agreement: with / without (met) | "
             "student-tier hours at 10^6: with / without |", "|---|---|---|---|---|---|---|"]
    for path in sorted(out.glob("*.json")):
        d = json.loads(path.read_text())
        for t in sorted({r["target"] for r in d["runs"]}):
            rs = [r for r in d["runs"] if r["target"] == t]
            m = lambda f: float(np.mean([f(r) for r in rs]))  # noqa: E731
            met = lambda k: sum(r[k]["realised"] >= t for r in rs)  # noqa: E731
            hours = [r["student_s_1e6"] for r in rs if "student_s_1e6" in r]
            h = (f"{np.mean([x['with_fast'] for x in hours]) / 3600:.1f} / {np.mean([x['without'] for x in hours]) / 3600:.1f}"
                 if hours else "-")
            pool = int(d["pool_share"] * d["n_docs"])
            lines.append(
                f"| {d['dataset']} ({d['n_docs']:,}, {pool:,}) | {t} | {100 * m(lambda r: r['fast_share_outside']):.1f}% | "
                f"{m(lambda r: r['auto']['escalations']):,.0f} / {m(lambda r: r['none']['escalations']):,.0f} | "
                f"{100 * m(lambda r: r['auto']['escalation_rate_new_docs']):.1f}% / "
                f"{100 * m(lambda r: r['none']['escalation_rate_new_docs']):.1f}% | "
                f"{m(lambda r: r['auto']['realised']):.4f} / {m(lambda r: r['none']['realised']):.4f} "
                f"({met('auto')}/{len(rs)}, {met('none')}/{len(rs)}) | {h} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
