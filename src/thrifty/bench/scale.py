"""Scale probe: seconds per selection round against pool size.

A synthetic pool of N documents is made by resampling the rows of a real dataset's
precomputed feature matrix (the same as resampling its texts, then featurising, without
paying N transforms). A student is trained on ``labelled`` random documents with their
gold labels, then each strategy selects one batch; the best of ``repeats`` rounds is
reported (as ``timeit`` does: on a shared machine the minimum is the least noisy estimate
of the work itself) with the number of rows it scored. Word TF-IDF (no character n-grams) keeps a
10^6-row pool around 100 MB.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..features import make_features
from ..strategies import PoolState, make_strategy
from ..students import full_proba, make_student
from .datasets import load_dataset
from .grid import parse_strategy

SIZES = (10_000, 100_000, 1_000_000)


def scale_probe(
    dataset: str = "trec6",
    sizes: Sequence[int] = SIZES,
    strategies: Sequence[str] = ("entropy", "mraru", "st_breaking_ties"),
    batch: int = 50,
    labelled: int = 500,
    repeats: int = 5,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """One row per (pool size, strategy): best-of-``repeats`` seconds per selection round and rows scored."""
    data = load_dataset(dataset)
    task = data.task
    feats = make_features("tfidf", char=False).fit(data.corpus.texts)
    X0 = feats.transform(data.corpus.texts)
    gold0 = np.asarray([task.index(g) for g in data.corpus.gold or []], dtype=int)
    rows = []
    for n in sizes:
        rng = np.random.default_rng(seed)
        pick = rng.integers(0, X0.shape[0], size=n)
        X, y_all = X0[pick], gold0[pick]
        lab = rng.choice(n, size=labelled, replace=False)
        student = make_student("lr").fit(X[lab], y_all[lab])
        mask = np.ones(n, dtype=bool)
        mask[lab] = False
        unl = np.flatnonzero(mask)
        for spec in strategies:
            name, params = parse_strategy(spec)
            strat = make_strategy(name, **params)
            times, scored = [], []
            for r in range(repeats):
                state = PoolState(
                    X=X, unlabelled=unl, labelled=lab, n_labels=task.n_labels, rng=np.random.default_rng(seed + r),
                    predict_proba=lambda Z: full_proba(student, Z, task.n_labels), y=y_all[lab],
                    teacher_confidence=np.ones(len(lab)),
                )
                t0 = time.perf_counter()
                strat.select(state, batch)
                times.append(time.perf_counter() - t0)
                scored.append(state.scored)
            rows.append({"dataset": data.name, "pool_size": n, "strategy": spec, "batch": batch,
                         "select_s": float(np.min(times)), "scored": int(np.median(scored)), "repeats": repeats})
            log(f"scale: pool {n:,} {spec}: {rows[-1]['select_s']:.4f}s per round, {rows[-1]['scored']:,} rows scored")
    df = pd.DataFrame(rows)
    base = df[df["strategy"] == "entropy"].set_index("pool_size")["select_s"]
    df["x_faster_than_entropy"] = [base.get(n, np.nan) / s if s > 0 else np.nan for n, s in zip(df["pool_size"], df["select_s"])]
    return df
