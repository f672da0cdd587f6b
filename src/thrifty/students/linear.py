"""Logistic regression student (the core default)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression


class ConstantStudent:
    """Predicts the single class it saw; used until a second class is labelled."""

    def fit(self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "ConstantStudent":
        self.classes_ = np.unique(np.asarray(y, dtype=int))[:1]
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.ones((X.shape[0], 1))


class LogisticStudent:
    """Multinomial logistic regression (lbfgs); accepts sample weights."""

    name = "lr"

    def __init__(self, C: float = 10.0, max_iter: int = 1000, random_state: int | None = 0):
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "LogisticStudent":
        y = np.asarray(y, dtype=int)
        if len(np.unique(y)) < 2:
            self.model_ = ConstantStudent().fit(X, y)
        else:
            self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)
            self.model_.fit(X, y, sample_weight=sample_weight)
        self.classes_ = np.asarray(self.model_.classes_, dtype=int)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.model_.predict_proba(X)
