"""LLKD vs entropy vs M-RARU vs random on real recorded LLM teachers (GitHub issue 5).

For each dataset, arm and seed, runs the Distiller (tfidf-lr, replay teacher, random seed set
and rounds of ``--batch`` labels, no validation slice) up to ``--budget`` labels and records the student's accuracy on the gold
test split after every round. The reference is the "full-pool student": the same student
trained on every pool row the teacher answered, with the teacher's labels.

Writes ``OUT/runs.csv`` (one row per run and round; appended as runs finish, so an
interrupted experiment resumes where it stopped) and ``OUT/summary.md``.

    nice -n 10 python benchmarks/llkd_experiment.py --datasets mr_chatgpt gwsd_gpt4o ag_news \\
        --seeds 0 1 2 --out benchmarks/results/llkd
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from thrifty.corpus import Corpus, read_corpus
from thrifty.features import make_features
from thrifty.loop import Distiller
from thrifty.students import full_proba, make_student
from thrifty.task import Task
from thrifty.teachers.replay import CONF_COLS, LABEL_COLS, PROBS_COLS, ReplayTeacher

DATA = Path("/work/shared/datasets")
QWEN = "teacher_qwen2.5-1.5b"
ARMS: dict[str, tuple[str, dict]] = {
    "random": ("random", {}),
    "entropy": ("entropy", {}),
    "mraru": ("mraru", {}),
    "llkd": ("llkd", {}),  # replay teacher -> the pool setting
    "llkd_active": ("llkd", {"setting": "active"}),
    "llkd_noweights": ("llkd", {"weighted": False}),
    "llkd_fixed": ("llkd", {"adaptive": False, "teacher_threshold": 0.8, "student_threshold": 0.5}),
}
CHECKPOINTS = (100, 200, 500, 1000)


def load(name: str) -> tuple[Task, Corpus, ReplayTeacher, list[str], list[str | None]]:
    """Pool, teacher and gold test split. Qwen datasets: the pool is restricted to recorded rows
    that were not few-shot examples in the teacher's prompt."""
    d = DATA / name
    task = Task.load(str(d / "labels.json"))
    test = read_corpus(d / "test.csv", gold_col="label")
    rec = d / f"{QWEN}.csv"
    if not rec.exists():
        extra = [c for c in LABEL_COLS + CONF_COLS + PROBS_COLS if c in _header(d / "pool.csv")]
        pool = read_corpus(d / "pool.csv", gold_col="label", extra_cols=extra)
        return task, pool, ReplayTeacher.from_corpus_column(task, pool), test.texts, test.gold
    full = read_corpus(d / "pool.csv", gold_col="label")
    shots = set(json.loads((d / f"{QWEN}.json").read_text())["shot_rows"])
    with open(rec, newline="", encoding="utf-8") as f:
        recs = [r for r in csv.DictReader(f) if int(r["row"]) not in shots]
    rows = [int(r["row"]) for r in recs]
    pool = Corpus(texts=[full.texts[i] for i in rows], ids=np.asarray(rows), gold=[full.gold[i] for i in rows],
                  source=str(d / "pool.csv"))
    table = {"text": pool.texts, **{c: [r[c] for r in recs] for c in ("teacher_label", "teacher_confidence", "teacher_probs")}}
    teacher = ReplayTeacher.from_table(task, pool, table, key="text", name=f"replay:{name}/{QWEN}")
    return task, pool, teacher, test.texts, test.gold


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f))


def accuracy(pred: np.ndarray, gold: list[str | None], task: Task) -> float:
    ok = [(p, task.index(g)) for p, g in zip(pred, gold) if g in task.labels]
    a = np.asarray(ok)
    return float((a[:, 0] == a[:, 1]).mean())


def full_pool_accuracy(task, pool, teacher, feats, test_texts, test_gold) -> tuple[float, int]:
    labs = teacher.label(pool.texts)
    idx = np.asarray([i for i, a in enumerate(labs) if a.label is not None])
    y = np.asarray([task.index(labs[i].label) for i in idx])
    student = make_student("lr").fit(feats.transform([pool.texts[i] for i in idx]), y)
    pred = full_proba(student, feats.transform(test_texts), task.n_labels).argmax(1)
    return accuracy(pred, test_gold, task), len(idx)


def done_runs(path: Path) -> set[tuple[str, str, int]]:
    if not path.exists():
        return set()
    with open(path, newline="", encoding="utf-8") as f:
        return {(r["dataset"], r["arm"], int(r["seed"])) for r in csv.DictReader(f)}


def append_rows(path: Path, rows: list[dict]) -> None:
    new = not path.exists()
    cols = ["dataset", "arm", "seed", "labels", "test_accuracy", "full_pool_accuracy", "full_pool_labels",
            "abstained", "llkd_kept", "llkd_set_aside", "llkd_tau_teacher_mean", "llkd_tau_student_mean", "select_s", "fit_s", "run_s"]
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows(rows)


def summarise(runs_csv: Path, budget: int) -> str:
    with open(runs_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = ["| dataset | arm | seeds | " + " | ".join(f"acc@{c}" for c in CHECKPOINTS) +
           " | AULC 100-1000 | labels to 98% of full pool | full pool |", "|" + "---|" * (7 + len(CHECKPOINTS))]
    keys = list(dict.fromkeys((r["dataset"], r["arm"]) for r in rows))
    for ds, arm in keys:
        rs = [r for r in rows if r["dataset"] == ds and r["arm"] == arm]
        seeds = sorted({int(r["seed"]) for r in rs})
        full = float(rs[0]["full_pool_accuracy"])
        curves = {s: {int(r["labels"]): float(r["test_accuracy"]) for r in rs if int(r["seed"]) == s} for s in seeds}
        cells = []
        for c in CHECKPOINTS:
            v = [cv[c] for cv in curves.values() if c in cv]
            cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "-")
        aulc = [np.mean([a for n, a in cv.items() if 100 <= n <= budget]) for cv in curves.values()]
        reach = [min((n for n, a in cv.items() if a >= 0.98 * full), default=None) for cv in curves.values()]
        hit = [r for r in reach if r is not None]
        reach_s = (f"{np.mean(hit):.0f} ± {np.std(hit):.0f}" if hit else f">{budget}") + f" ({len(hit)}/{len(reach)} seeds)"
        out.append(f"| {ds} | {arm} | {len(seeds)} | " + " | ".join(cells) +
                   f" | {np.mean(aulc):.3f} ± {np.std(aulc):.3f} | {reach_s} | {full:.3f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["mr_chatgpt", "gwsd_gpt4o", "ag_news"])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100, help="labels per round (and random seed size)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/llkd"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs_csv = args.out / "runs.csv"
    done = done_runs(runs_csv)
    for ds in args.datasets:
        task, pool, teacher, test_texts, test_gold = load(ds)
        feats = make_features("tfidf")
        feats.fit(pool.texts)
        full_acc, full_n = full_pool_accuracy(task, pool, teacher, feats, test_texts, test_gold)
        print(f"{ds}: pool {len(pool)}, teacher answered {full_n}, full-pool student acc {full_acc:.4f}", flush=True)
        for seed in args.seeds:
            for arm in args.arms:
                if (ds, arm, seed) in done:
                    continue
                strategy, params = ARMS[arm]
                t0 = time.perf_counter()
                d = Distiller(task, teacher, student="tfidf-lr", strategy=strategy, strategy_params=params,
                              budget=args.budget, batch=args.batch, seed_size=args.batch, val_size=0, random_state=seed,
                              eval_texts=test_texts, eval_gold=test_gold, features=feats).fit(pool)
                run_s = time.perf_counter() - t0
                rows = [{"dataset": ds, "arm": arm, "seed": seed, "full_pool_accuracy": round(full_acc, 4),
                         "full_pool_labels": full_n, "run_s": round(run_s, 2), **h} for h in d.history_]
                append_rows(runs_csv, rows)
                print(f"  {ds} {arm} seed {seed}: acc@{d.history_[-1]['labels']} = {d.history_[-1]['test_accuracy']} "
                      f"({run_s:.1f}s)", flush=True)
        (args.out / "summary.md").write_text(summarise(runs_csv, args.budget), encoding="utf-8")
    (args.out / "summary.md").write_text(summarise(runs_csv, args.budget), encoding="utf-8")
    print((args.out / "summary.md").read_text())


if __name__ == "__main__":
    main()
