"""Speed and quality of the local teachers on ag_news test docs, prefix caching on vs off.

For each model: docs/s, prompt tokens/s, accuracy and ECE against gold. The two modes run
interleaved document by document on the same loaded model, so machine noise hits both
alike and their ratio is meaningful; ``max |p_on - p_off|`` checks that reusing the cached
prefix gives the same distributions as evaluating the whole prompt.

    nice -n 10 .venv/bin/python benchmarks/teacher_speed.py --n 300 --n-off 60 \
        --models gemma-270m,qwen-0.5b,qwen-1.5b --out benchmarks/results/teacher_speed.json

Few-shot examples: 2 per class from the ag_news *pool* (never the test split).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from thrifty.calibration import expected_calibration_error
from thrifty.corpus import read_corpus
from thrifty.task import Example, Task
from thrifty.teachers.local import LocalTeacher

DATA = Path("/work/shared/datasets/ag_news")
DESCRIPTIONS = {"World": "world news: politics, conflicts, diplomacy", "Business": "companies, markets, economy",
                "Sci/Tech": "science and technology"}


def ag_news_task(data: Path, shots: int = 2) -> Task:
    labels = tuple(json.loads((data / "labels.json").read_text())["labels"])
    pool = read_corpus(data / "pool.csv", gold_col="label")
    ex = [Example(t[:300], g) for lab in labels for t, g in [(t, g) for t, g in zip(pool.texts, pool.gold) if g == lab][:shots]]
    return Task(labels=labels, descriptions=DESCRIPTIONS, examples=tuple(ex), name="ag_news")


def run_model(model: str, task: Task, texts: list[str], gold: list[str], n_off: int, max_doc_tokens: int) -> dict:
    t0 = time.perf_counter()
    on = LocalTeacher(task, model, max_doc_tokens=max_doc_tokens, prefix_cache=True)
    load_s = time.perf_counter() - t0
    off = LocalTeacher(task, model, max_doc_tokens=max_doc_tokens, prefix_cache=False)  # same loaded model
    off_every = max(1, len(texts) // max(1, n_off)) if n_off else 0
    p_on, diffs = [], []
    for i, text in enumerate(texts):
        a = on.label([text])[0]
        p_on.append(a.probs)
        if off_every and i % off_every == 0 and off.stats.docs < n_off:
            b = off.label([text])[0]
            diffs.append(float(np.abs(a.probs - b.probs).max()))
    idx = {lab: j for j, lab in enumerate(task.labels)}
    y = np.asarray([idx[g] for g in gold])
    P = np.stack(p_on)
    row = {
        "model": model, "docs": on.stats.docs, "load_s": round(load_s, 2), "prefix_tokens": len(on._prefix),
        "codes": on.codes is not None, "truncated": on.stats.truncated,
        "accuracy": round(float((P.argmax(1) == y).mean()), 4), "ece": round(expected_calibration_error(P, y), 4),
    }
    for name, t in (("on", on), ("off", off)):
        s = t.stats
        if s.docs:
            row[f"docs_per_s_{name}"] = round(s.docs / s.seconds, 3)
            row[f"prompt_tok_per_s_{name}"] = round(s.prompt_tokens / s.seconds, 1)
            row[f"evaluated_tok_per_doc_{name}"] = round(s.evaluated_tokens / s.docs, 1)
    row["docs_off"] = off.stats.docs
    if off.stats.docs:
        row["speedup_on_vs_off"] = round(row["docs_per_s_on"] / row["docs_per_s_off"], 2)
        row["max_abs_prob_diff_on_vs_off"] = float(f"{max(diffs):.2e}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="gemma-270m,qwen-0.5b,qwen-1.5b")
    ap.add_argument("--n", type=int, default=300, help="ag_news test docs per model (prefix cache on)")
    ap.add_argument("--n-off", type=int, default=60, help="of those, docs also run with the prefix cache off")
    ap.add_argument("--n-by-model", default="", help="override --n per model, e.g. qwen-1.5b=100")
    ap.add_argument("--max-doc-tokens", type=int, default=256)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/teacher_speed.json"))
    args = ap.parse_args()
    task = ag_news_task(args.data)
    test = read_corpus(args.data / "test.csv", gold_col="label")
    order = np.random.default_rng(0).permutation(len(test))
    n_by = dict(kv.split("=") for kv in args.n_by_model.split(",") if kv)
    rows = []
    for model in args.models.split(","):
        n = int(n_by.get(model, args.n))
        sel = order[:n]
        row = run_model(model, task, [test.texts[i] for i in sel], [test.gold[i] for i in sel],
                        min(args.n_off, n), args.max_doc_tokens)
        rows.append(row)
        print(json.dumps(row), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
