"""How far a dollar budget is overshot in the seed/validation phase (issue 12, item 5).

Mostly short texts and a few long ones, a replay teacher priced per prompt token: when the one
probe label happened to be short, the seed phase used to size validation + seed from it and buy
about twice the budget. Run it with PYTHONPATH pointing at the code to measure:

    PYTHONPATH=src python benchmarks/seed_budget_overshoot.py
"""

from __future__ import annotations

import numpy as np

from thrifty import Corpus, Distiller, Task
from thrifty.task import text_sha256
from thrifty.teachers.replay import ReplayTeacher

BUDGET, BATCH = 0.05, 5


def main() -> None:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(words, size=2 if i % 5 else 400)) + f" n{i}" for i in range(600)]
    task = Task(labels=("a", "b"))
    teacher = ReplayTeacher(task, {text_sha256(t): {"label": "ab"[i % 2]} for i, t in enumerate(texts)}, price_in=0.01)
    corpus = Corpus(texts=texts, ids=np.arange(600).astype(str).astype(object))
    most = BATCH * max(teacher.label([t])[0].usage.cost_usd for t in texts)
    print(f"budget ${BUDGET}; one batch of the longest texts costs ${most:.4f}")
    for seed in range(4):
        d = Distiller(task, teacher, budget=f"${BUDGET}", batch=BATCH, seed_size=40, val_size=40, random_state=seed,
                      student="tfidf-lr").fit(corpus)
        spent = d.history_[-1]["dollars"]
        print(f"seed {seed}: spent ${spent:.4f} ({spent / BUDGET:.2f}x the budget); {d.stop_reason_}")


if __name__ == "__main__":
    main()
