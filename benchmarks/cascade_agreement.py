"""Cascade on ag_news with the recorded Qwen teacher: estimated vs realised agreement and escalation.

Makes a run (`thrifty distill`, replay teacher, --budget labels), then `thrifty predict
--cascade --target-agreement T` on the pool rows that were neither trained on, validated
on, nor shown to the teacher as few-shot examples. The teacher's labels on those rows are
its recording, so the realised agreement of the final labels with the teacher is exact.

    python benchmarks/cascade_agreement.py --out /tmp/cascade_bench --targets 0.95 0.98 0.99
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

DATA = Path("/work/shared/datasets/ag_news")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--targets", type=float, nargs="+", default=[0.95, 0.98, 0.99])
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    thrifty = str(Path(sys.executable).with_name("thrifty"))
    rec_csv = a.data / "teacher_qwen2.5-1.5b.csv"
    run = a.out / "run"
    if not (run / "state.json").exists():
        subprocess.run([thrifty, "distill", str(a.data / "pool.csv"), "--labels", str(a.data / "labels.json"),
                        "--teacher", f"replay:{rec_csv}", "--budget", str(a.budget), "--out", str(run), "-q"], check=True)
    state = json.loads((run / "state.json").read_text())
    shots = set(json.loads(rec_csv.with_suffix(".json").read_text())["shot_rows"])
    used = set(state["train_idx"]) | set(state["val_idx"]) | shots
    pool = pcsv.read_csv(a.data / "pool.csv")
    rec = pcsv.read_csv(rec_csv).to_pydict()
    teacher = dict(zip(rec["row"], rec["teacher_label"]))
    rows = [i for i in range(pool.num_rows) if i not in used]
    corpus = a.out / "rest.parquet"
    pq.write_table(pa.table({"row": rows, "text": pool.column("text").take(rows)}), corpus)
    results = []
    for t in a.targets:
        out, summ = a.out / f"pred_{t}.parquet", a.out / f"pred_{t}.json"
        subprocess.run([thrifty, "predict", str(run), str(corpus), "--out", str(out), "--id-col", "row", "--cascade",
                        "--target-agreement", str(t), "--workers", str(a.workers), "--restart", "-q",
                        "--summary-json", str(summ)], check=True)
        s = json.loads(summ.read_text())
        pred = pq.read_table(out).to_pydict()
        judged = [(lab, teacher[r]) for r, lab in zip(pred["row"], pred["label"]) if teacher.get(r)]
        student_only = [(lab, teacher[r]) for r, lab, src in zip(pred["row"], pred["label"], pred["source"])
                        if teacher.get(r) and src == "student"]
        p = s["cascade"]
        results.append({
            "target": t, "n": len(pred["row"]), "threshold": p["threshold"], "n_val": p["n_val"],
            "est_agreement": p["est_agreement"], "est_agreement_ci": p["agreement_ci"],
            "realised_agreement": sum(x == y for x, y in judged) / len(judged),
            "est_escalation_rate": p["est_escalation_rate"], "est_escalation_ci": p["escalation_ci"],
            "realised_escalation_rate": s["escalated"] / len(pred["row"]),
            "student_agreement_val": p["student_agreement"],
            "kept_rows_agreement": sum(x == y for x, y in student_only) / max(len(student_only), 1),
            "abstained": s["abstained"], "teacher_requests": s["teacher_requests"],
        })
        print(json.dumps(results[-1]), flush=True)
    (a.out / "cascade_results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
