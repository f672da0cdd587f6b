"""Does a finished job's guarantee carry over to new documents (``thrifty label NEW --from-job JOB.thrifty``)?

For each real-teacher set, seed and target: the corpus is split uniformly in two halves; a label job runs on
the first (the job's defaults for a corpus that size, with student ``tfidf-lr`` and no ensemble, fast tier or
fine-tuning: the guarantee does not depend on the student, and this keeps the run short), then
``label_with_job`` labels the second half with it (no audit). The recording gives the teacher's answer on every
new document, so the realised agreement there is exact. Per target: how often it met the target (the guarantee
asks >= 90% of runs, up to the sampling noise of a finite half), its mean and lowest value, the escalation
rate on the new half next to the job's on its own audit, and how often the drift warning fired (both halves are
drawn alike, so it should rarely).

    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_from_job.py --out benchmarks/results/label/from_job
    python benchmarks/explore/label_from_job.py --out benchmarks/results/label/from_job --tables
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from end_to_end import DATASETS, TARGETS  # noqa: E402

from thrifty.bench.datasets import load_dataset, make_bench_teacher  # noqa: E402
from thrifty.corpus import Corpus  # noqa: E402
from thrifty.labelling import LabelConfig, LabelJob  # noqa: E402
from thrifty.labelling.reuse import label_with_job  # noqa: E402


def one(task, teacher, texts, T, seed: int, target: float) -> dict:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(texts))
    a, b = np.sort(perm[: len(texts) // 2]), np.sort(perm[len(texts) // 2 :])
    cfg = LabelConfig(target_agreement=target, student="tfidf-lr", ensemble=False, fast_student="none", finetune=False,
                      seed=seed)
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        job = LabelJob(task, teacher, cfg, work=work).run(Corpus.from_texts([texts[i] for i in a]))
        res = label_with_job(work, Corpus.from_texts([texts[i] for i in b]), teacher)
        secs = time.perf_counter() - t0
    lab = np.asarray([task.index(x) if x is not None else -1 for x in res.labels])
    ok = T[b] >= 0
    agree = float(np.mean(lab[ok] == T[b][ok]))
    return {"agreement_new": agree, "met": agree >= target, "escalation_new": res.summary["escalation_rate"],
            "escalation_job_audit": job.summary["escalation_rate_new_docs"], "drift_warning": bool(res.summary["drift_warning"]),
            "job_docs": int(len(a)), "new_docs": int(len(b)), "train_labels": job.summary["teacher_calls"]["training"],
            "val_rows": job.summary["teacher_calls"]["validation"], "seconds": round(secs, 1)}


def tables(out: Path) -> str:
    rows = ["| dataset | target | runs | met on the new half | agreement: mean (lowest) | escalation: new half / job's audit "
            "| drift warnings |", "|---|---|---|---|---|---|---|"]
    allr: dict[float, list] = {}
    for name in DATASETS:
        f = out / f"{name}.json"
        if not f.exists():
            continue
        runs = json.loads(f.read_text())["runs"]
        for t in TARGETS:
            rs = [r for k, r in runs.items() if k.startswith(f"{t}|")]
            if not rs:
                continue
            allr.setdefault(t, []).extend(rs)
            ag = [r["agreement_new"] for r in rs]
            rows.append(f"| {name} | {t} | {len(rs)} | {sum(r['met'] for r in rs)}/{len(rs)} | {np.mean(ag):.3f} "
                        f"({min(ag):.3f}) | {100 * np.mean([r['escalation_new'] for r in rs]):.1f}% / "
                        f"{100 * np.mean([r['escalation_job_audit'] for r in rs]):.1f}% | "
                        f"{sum(r['drift_warning'] for r in rs)}/{len(rs)} |")
    for t, rs in sorted(allr.items()):
        rows.append(f"| **all** | {t} | {len(rs)} | {sum(r['met'] for r in rs)}/{len(rs)} | "
                    f"{np.mean([r['agreement_new'] for r in rs]):.3f} ({min(r['agreement_new'] for r in rs):.3f}) | | "
                    f"{sum(r['drift_warning'] for r in rs)}/{len(rs)} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--targets", type=float, nargs="+", default=TARGETS)
    ap.add_argument("--tables", action="store_true")
    a = ap.parse_args()
    if a.tables:
        print(tables(a.out))
        return
    a.out.mkdir(parents=True, exist_ok=True)
    for name in a.datasets:
        path = a.out / f"{name}.json"
        if path.exists():
            continue
        data = load_dataset(name)
        setup = make_bench_teacher("recorded", data, price_model="gpt-4o-mini")
        texts = setup.corpus.texts
        T = np.asarray([data.task.index(x) if x is not None else -1 for x in setup.answers])
        res = {"dataset": name, "n_docs": len(texts), "runs": {}}
        for t in a.targets:
            for seed in a.seeds:
                r = res["runs"][f"{t}|{seed}"] = one(data.task, setup.teacher, texts, T, seed, t)
                print(name, t, seed, r, flush=True)
        path.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
