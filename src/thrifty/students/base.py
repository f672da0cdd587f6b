"""The student protocol (scikit-learn style) and the text model that wraps features + student."""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import ThriftyError, UnknownLabelError


@runtime_checkable
class Student(Protocol):
    """A classifier on feature matrices. ``classes_`` are label indices (ints) into the task's labels."""

    classes_: np.ndarray

    def fit(self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "Student": ...

    def predict_proba(self, X: Any) -> np.ndarray: ...


def check_targets(X: Any, y: Any, sample_weight: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate training targets: ``y`` is 1-D label indices (hard) or 2-D ``(n, K)`` probability
    rows (soft); ``sample_weight`` is 1-D, finite and non-negative. Raises a clear ThriftyError."""
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    try:
        y = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        raise ThriftyError("Student targets must be label indices (ints) or probability rows; "
                           "map label names with TextModel.label_indices first.") from None
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ThriftyError(f"Got {n} rows but targets of shape {y.shape}; give one target per row.")
    if n == 0:
        raise ThriftyError("No training rows: label at least one document before fitting a student.")
    if y.ndim == 1 and (np.any(y < 0) or np.any(y != np.round(y))):
        raise UnknownLabelError("Hard labels must be non-negative label indices; drop abstentions (-1) first.")
    if y.ndim == 2 and (np.any(~np.isfinite(y)) or np.any(y < 0) or np.any(y.sum(axis=1) <= 0)):
        raise ThriftyError("Soft labels must be non-negative probability rows with a positive sum.")
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=float)
        if sample_weight.shape != (n,) or np.any(~np.isfinite(sample_weight)) or np.any(sample_weight < 0):
            raise ThriftyError(f"sample_weight must be {n} finite, non-negative numbers.")
        if sample_weight.sum() <= 0:
            raise ThriftyError("All sample weights are zero: nothing to learn from.")
    return (y.astype(int) if y.ndim == 1 else y / y.sum(axis=1, keepdims=True)), sample_weight


def expand_soft(X: Any, y: np.ndarray, sample_weight: np.ndarray | None = None) -> tuple[Any, np.ndarray, np.ndarray | None]:
    """Turn soft targets into hard ones that any weighted classifier can learn from.

    Row i with target distribution p_i and weight w_i becomes one copy per class k with
    p_ik > 0, labelled k and weighted p_ik * w_i. For a weighted log-loss this is exactly the
    soft-label cross-entropy. Hard targets (1-D) pass through unchanged.
    """
    if y.ndim == 1:
        return X, y, sample_weight
    if np.all((y > 0).sum(axis=1) == 1):  # one-hot rows: exactly the hard-label fit
        return X, y.argmax(axis=1), sample_weight
    w = np.ones(len(y)) if sample_weight is None else sample_weight
    rows, cls = np.nonzero(y > 0)
    Xr = X[rows] if not isinstance(X, list) else [X[i] for i in rows]
    return Xr, cls.astype(int), y[rows, cls] * w[rows]


def full_proba(student: Student, X: Any, n_labels: int) -> np.ndarray:
    """``predict_proba`` spread onto all ``n_labels`` columns (classes never seen get 0)."""
    p = student.predict_proba(X)
    classes = np.asarray(student.classes_, dtype=int)
    if len(classes) == n_labels and np.array_equal(classes, np.arange(n_labels)):
        return p
    out = np.zeros((p.shape[0], n_labels), dtype=np.float64)
    out[:, classes] = p
    return out


class TextModel:
    """Features + student over a fixed label set: what ``thrifty predict`` loads and runs."""

    def __init__(self, features: Any, student: Student, labels: Sequence[str], name: str = ""):
        self.features = features
        self.student = student
        self.labels = tuple(labels)
        self.name = name

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return full_proba(self.student, self.features.transform(list(texts)), len(self.labels))

    def predict(self, texts: Sequence[str]) -> list[str]:
        p = self.predict_proba(texts)
        return [self.labels[i] for i in p.argmax(axis=1)]

    def label_indices(self, y: Sequence[str]) -> np.ndarray:
        idx = {lab: i for i, lab in enumerate(self.labels)}
        bad = sorted({v for v in y if v not in idx})
        if bad:
            raise UnknownLabelError(f"Labels {bad[:5]} are not in the label set {list(self.labels)}.")
        return np.asarray([idx[v] for v in y], dtype=int)
