"""The shared scikit-learn student wrapper: target checks, soft labels, one-class fallback,
and a dense projection for estimators that cannot take sparse TF-IDF matrices."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.decomposition import TruncatedSVD

from .base import check_targets, expand_soft


class ConstantStudent:
    """Predicts the single class it saw; used until a second class is labelled."""

    def fit(self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "ConstantStudent":
        self.classes_ = np.unique(np.asarray(y, dtype=int))[:1]
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.ones((X.shape[0], 1))


class SklearnStudent(ClassifierMixin, BaseEstimator):
    """Base for students built on one scikit-learn estimator.

    ``fit(X, y, sample_weight)`` takes hard labels (1-D label indices) or soft labels
    (``(n, K)`` probability rows, expanded by :func:`~thrifty.students.base.expand_soft`).
    Subclasses implement ``_estimator()``; set ``dense = True`` when the estimator needs a
    dense matrix: sparse input is then projected with a TruncatedSVD fitted on the training rows.
    """

    dense = False
    max_dense_dims = 256

    def _estimator(self, y: np.ndarray) -> Any:
        raise NotImplementedError

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "SklearnStudent":
        y, w = check_targets(X, y, sample_weight)
        X, y, w = expand_soft(X, y, w)
        self.projection_ = None
        if len(np.unique(y)) < 2:
            self.model_ = ConstantStudent().fit(X, y)
        else:
            X = self._project(X, fit=True)
            self.model_ = self._estimator(y)
            self.model_.fit(X, y, sample_weight=w)
        self.classes_ = np.asarray(self.model_.classes_, dtype=int)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.model_.predict_proba(self._project(X, fit=False))

    def _project(self, X: Any, fit: bool) -> Any:
        if fit and self.dense and sp.issparse(X):
            k = int(min(self.max_dense_dims, X.shape[0] - 1, X.shape[1] - 1))
            if k >= 1:
                self.projection_ = TruncatedSVD(n_components=k, random_state=0).fit(X)
        if self.projection_ is not None:
            return self.projection_.transform(X)
        return X.toarray() if self.dense and sp.issparse(X) else X
