"""Issue-2 benchmark: random vs entropy vs M-RARU with real recorded LLM teachers, and the
cost of one selection round on a 100k-text pool (entropy scores the pool, M-RARU samples).

    python benchmarks/core_strategies.py            # ~10 min on 2 cores
    python benchmarks/core_strategies.py --quick    # 1 seed, smaller pool

Teachers: mr_chatgpt = real gpt-3.5-turbo labels (pool column); ag_news = the local Qwen2.5-1.5B
recording (teacher_qwen2.5-1.5b.csv, few-shot rows removed from the pool). Accuracy is on the
gold test split, which is never trained on or selected from.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from thrifty import Distiller, Task, read_corpus
from thrifty.corpus import Corpus
from thrifty.features import TfidfFeatures
from thrifty.strategies import MRARUStrategy, PoolState, UncertaintyStrategy
from thrifty.students import LogisticStudent, full_proba
from thrifty.teachers.replay import ReplayTeacher, load_replay

SHARED = next(p for p in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")) if p.exists())
CHECKPOINTS = (100, 200, 500)


def load(name: str) -> tuple[Task, Corpus, ReplayTeacher, Corpus]:
    d = SHARED / "datasets" / name
    task = Task.load(json.loads((d / "labels.json").read_text())["labels"])
    test = read_corpus(d / "test.csv", gold_col="label")
    rec = d / "teacher_qwen2.5-1.5b.csv"
    if not rec.exists():
        corpus, teacher = load_replay(task, d / "pool.csv")
        return task, corpus, teacher, test
    full = read_corpus(d / "pool.csv", gold_col="label")
    teacher = ReplayTeacher.from_file(task, full, rec)
    shots = set(json.loads(rec.with_suffix(".json").read_text()).get("shot_rows", []))
    keep = [i for i in range(len(full)) if i not in shots]
    corpus = Corpus(texts=[full.texts[i] for i in keep], ids=full.ids[keep], gold=[full.gold[i] for i in keep])
    return task, corpus, teacher, test


def curves(names: list[str], seeds: int) -> list[dict]:
    rows = []
    for name in names:
        task, corpus, teacher, test = load(name)
        feats = TfidfFeatures().fit(corpus.texts)
        for strategy in ("random", "entropy", "mraru"):
            for seed in range(seeds):
                d = Distiller(task, teacher, strategy=strategy, budget=600, batch=50, seed_size=50, val_size=100,
                              random_state=seed, features=feats, eval_texts=test.texts, eval_gold=test.gold)
                d.fit(corpus)
                for r in d.history_:
                    if r["labels"] in CHECKPOINTS:
                        rows.append({"dataset": name, "strategy": strategy, "seed": seed, "labels": r["labels"],
                                     "test_accuracy": r["test_accuracy"], "val_agreement": r["val_agreement"]})
                print(name, strategy, seed, [r["test_accuracy"] for r in d.history_ if r["labels"] in CHECKPOINTS], flush=True)
    return rows


def selection_speed(pool_size: int, repeats: int = 5) -> dict:
    task, corpus, _, _ = load("ag_news")
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(corpus), pool_size)
    texts = [corpus.texts[i] for i in idx]
    feats = TfidfFeatures().fit(corpus.texts)
    X = feats.transform(texts)
    lab = rng.choice(pool_size, 500, replace=False)
    y = np.asarray([task.index(corpus.gold[idx[i]]) for i in lab])
    student = LogisticStudent().fit(X[lab], y)
    mask = np.ones(pool_size, bool)
    mask[lab] = False
    out = {}
    for name, strat in (("entropy", UncertaintyStrategy("entropy")), ("mraru", MRARUStrategy(exponent=2.0))):
        times, scored = [], []
        for r in range(repeats):
            st = PoolState(X=X, unlabelled=np.flatnonzero(mask), labelled=lab, n_labels=task.n_labels,
                           rng=np.random.default_rng(r), predict_proba=lambda Xs: full_proba(student, Xs, task.n_labels))
            t0 = time.perf_counter()
            strat.select(st, 50)
            times.append(time.perf_counter() - t0)
            scored.append(st.scored)
        out[name] = {"median_s": float(np.median(times)), "scored": float(np.mean(scored))}
    out["ratio_entropy_over_mraru"] = out["entropy"]["median_s"] / out["mraru"]["median_s"]
    out["pool_size"] = pool_size
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/core_strategies"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    speed = selection_speed(10_000 if a.quick else 100_000)
    print(json.dumps(speed, indent=2), flush=True)
    rows = curves(["mr_chatgpt", "ag_news"], 1 if a.quick else 3)
    import csv

    with open(a.out / "curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| dataset | strategy | " + " | ".join(f"acc@{c}" for c in CHECKPOINTS) + " |", "|---|---|" + "---|" * len(CHECKPOINTS)]
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        for s in ("random", "entropy", "mraru"):
            cells = []
            for c in CHECKPOINTS:
                v = [r["test_accuracy"] for r in rows if r["dataset"] == ds and r["strategy"] == s and r["labels"] == c]
                cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}")
            lines.append(f"| {ds} | {s} | " + " | ".join(cells) + " |")
    lines += ["", f"Selection of 50 from a {speed['pool_size']:,}-text pool (median of 5): entropy "
              f"{speed['entropy']['median_s']:.3f} s (scored {speed['entropy']['scored']:,.0f}), M-RARU "
              f"{speed['mraru']['median_s']:.4f} s (scored {speed['mraru']['scored']:,.0f}); ratio "
              f"{speed['ratio_entropy_over_mraru']:.0f}x"]
    (a.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
