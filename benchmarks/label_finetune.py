"""`thrifty label --finetune`: a fine-tuned all-mpnet-base-v2 next to the frozen final student.

On the shared datasets with a real recorded teacher (replayed through the ledger), each seed, the real
`LabelJob` runs twice with the same settings (the defaults: mpnet-lr, M-RARU, the ensemble, sizes that
grow with the corpus): once as it is, and once with `finetune=True`, which also fine-tunes mpnet on the
job's training labels (int8 ONNX for prediction), pools it with the frozen final student (geometric mean) and
keeps whichever of the frozen student and that pool has the Learn-then-Test threshold that escalates less on
validation (each tested at delta / 2, so the guarantee holds for the choice). Both runs buy the same
labels (the learner does not depend on the final student), so the difference is the final student and
the halved delta alone. `results/label/finetune/finetuned_alone/` holds the runs of the first design (the
fine-tuned student alone as the candidate, torch fp32).

Reported per run: which student was kept, the validation escalation of both, the escalation rate for new
documents (the audit) and the projected cost at 10^6 documents, realised agreement with the teacher
over every document (the recording answers every one) and gold accuracy, and wall time.

    OPENBLAS_NUM_THREADS=1 python benchmarks/label_finetune.py --out benchmarks/results/label/finetune
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from thrifty.bench.datasets import load_dataset, make_bench_teacher
from thrifty.labelling import LabelConfig, LabelJob

DATASETS = ["sst2_llama3", "gwsd_gpt4o", "ag_news", "mr_chatgpt", "trec6", "banking77"]


def one(task, teacher, corpus, T, G, cfg: LabelConfig) -> dict:
    t0 = time.perf_counter()
    r = LabelJob(task, teacher, cfg).run(corpus)
    s = r.summary
    lab = np.asarray(r.labels, dtype=object)
    ok, g = T != None, G != None  # noqa: E711
    return {"wall_s": time.perf_counter() - t0, "training": s["teacher_calls"]["training"],
            "validation": s["teacher_calls"]["validation"], "escalations": s["teacher_calls"]["escalations"],
            "escalation_rate_new_docs": s["escalation_rate_new_docs"],
            "pct_1e6": 100 * s["projection"]["at_1e6"]["fraction_of_teacher_everything"],
            "calls_pct": s["teacher_calls"]["pct_of_corpus"], "realised": float(np.mean(lab[ok] == T[ok])),
            "gold_accuracy": float(np.mean(lab[g] == G[g])) if g.any() else None,
            "student": s["tiers"]["student"]["name"], "finetuned": s.get("finetuned"),
            "audit_estimate": s["estimated_agreement"]["cascade_on_audit"]["agreement"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--report", action="store_true", help="Only write report.md from what --out holds.")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for name in [] if a.report else a.datasets:
        path = a.out / f"{name}.json"
        if path.exists():
            print(f"{name}: done already ({path})")
            continue
        data = load_dataset(name)
        setup = make_bench_teacher("recorded", data, price_model="gpt-4o-mini")
        corpus, task = setup.corpus, data.task
        T = np.asarray(setup.answers, dtype=object)
        gold_of = {t: g for t, g in zip(data.corpus.texts, data.corpus.gold or [])}
        G = np.asarray([gold_of.get(t) for t in corpus.texts], dtype=object)
        res = {"dataset": name, "n_docs": len(corpus), "target": a.target, "runs": []}
        for seed in a.seeds:
            row = {"seed": seed}
            for ft in (False, True):
                cfg = LabelConfig(target_agreement=a.target, student="mpnet-lr", seed=seed, finetune=ft)
                row["finetune" if ft else "frozen"] = one(task, setup.teacher, corpus, T, G, cfg)
            res["runs"].append(row)
            f, b = row["finetune"], row["frozen"]
            print(f"{name} seed {seed}: kept {f['student']}; new-doc escalation {100 * f['escalation_rate_new_docs']:.1f}% "
                  f"vs {100 * b['escalation_rate_new_docs']:.1f}%; 10^6 cost {f['pct_1e6']:.1f}% vs {b['pct_1e6']:.1f}%; "
                  f"realised {f['realised']:.4f} vs {b['realised']:.4f}; {f['wall_s']:.0f}s vs {b['wall_s']:.0f}s", flush=True)
            path.write_text(json.dumps(res, indent=1, default=float))
    (a.out / "report.md").write_text(report(a.out), encoding="utf-8")


def report(out: Path) -> str:
    """One row per dataset: means over seeds, --finetune vs the job as it is."""
    lines = ["| dataset (docs) | labels | kept | validation escalation: frozen / pool with the fine-tuned (delta/2) | "
             "new-doc escalation: job / job --finetune | cost at 10^6: job / --finetune | realised agreement "
             "(met): job / --finetune | gold accuracy: job / --finetune | wall s: job / --finetune |",
             "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(out.glob("*.json")):
        d = json.loads(path.read_text())
        rs, t = d["runs"], d["target"]
        m = lambda k, f: float(np.mean([r[k][f] for r in rs]))  # noqa: E731
        kept = ", ".join(r["finetune"]["student"] for r in rs)
        val = [list(r["finetune"]["finetuned"]["validation_escalation_rate"].values()) for r in rs if r["finetune"]["finetuned"]]
        v = f"{100 * np.mean([x[0] for x in val]):.1f}% / {100 * np.mean([x[1] for x in val]):.1f}%" if val else "-"
        met = lambda k: sum(r[k]["realised"] >= t for r in rs)  # noqa: E731
        gold = (f"{m('frozen', 'gold_accuracy'):.3f} / {m('finetune', 'gold_accuracy'):.3f}"
                if all(r["frozen"]["gold_accuracy"] is not None for r in rs) else "-")
        lines.append(
            f"| {d['dataset']} ({d['n_docs']:,}) | {m('frozen', 'training'):,.0f} | {kept} | {v} | "
            f"{100 * m('frozen', 'escalation_rate_new_docs'):.1f}% / {100 * m('finetune', 'escalation_rate_new_docs'):.1f}% | "
            f"{m('frozen', 'pct_1e6'):.1f}% / {m('finetune', 'pct_1e6'):.1f}% | "
            f"{m('frozen', 'realised'):.4f} / {m('finetune', 'realised'):.4f} ({met('frozen')}/{len(rs)}, {met('finetune')}/{len(rs)}) | "
            f"{gold} | {m('frozen', 'wall_s'):.0f} / {m('finetune', 'wall_s'):.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
