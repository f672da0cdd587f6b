"""Shared by the exploratory scripts: a recorded-teacher dataset, cached embeddings, LR probabilities."""

from __future__ import annotations

import numpy as np

from thrifty.bench.datasets import load_dataset, make_bench_teacher
from thrifty.features import make_features


def recorded(name: str):
    """``(task, texts, T)``: the dataset's corpus and its recorded teacher's label index per document (-1: none)."""
    data = load_dataset(name)
    setup = make_bench_teacher("recorded", data, price_model="gpt-4o-mini")
    task = data.task
    return task, setup.corpus.texts, np.asarray([task.index(x) if x is not None else -1 for x in setup.answers])


def embed(features: str, texts) -> np.ndarray:
    f = make_features(features)
    f.fit(texts)
    return np.asarray(f.transform(texts), dtype=np.float32)


def proba(model, X, k: int) -> np.ndarray:
    """Probabilities over all ``k`` labels (columns of labels the model never saw stay 0)."""
    P = np.zeros((X.shape[0], k))
    P[:, model.classes_] = model.predict_proba(X)
    return P


def recorded_mpnet(name: str):
    """``(task, texts, T, X, ok)``: :func:`recorded`, its mpnet embeddings and the rows the teacher answered."""
    task, texts, T = recorded(name)
    return task, texts, T, embed("mpnet", texts), np.flatnonzero(T >= 0)


def lr_proba(X, T, train, k: int) -> np.ndarray:
    """mpnet-lr's probabilities over every row: logistic regression (C=10) on the rows ``train``."""
    from sklearn.linear_model import LogisticRegression

    return proba(LogisticRegression(C=10, max_iter=1000).fit(X[train], T[train]), X, k)
