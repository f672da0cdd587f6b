"""The student protocol (scikit-learn style) and the text model that wraps features + student."""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import UnknownLabelError


@runtime_checkable
class Student(Protocol):
    """A classifier on feature matrices. ``classes_`` are label indices (ints) into the task's labels."""

    classes_: np.ndarray

    def fit(self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "Student": ...

    def predict_proba(self, X: Any) -> np.ndarray: ...


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
