"""Tree ensembles: random forest and histogram gradient boosting (scikit-learn, no new dependency)."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from threadpoolctl import threadpool_limits

from .sk import SklearnStudent


class ForestStudent(SklearnStudent):
    """Random forest; takes sparse input directly. Probabilities are the trees' vote shares."""

    name = "rf"

    def __init__(self, n_estimators: int = 300, min_samples_leaf: int = 1, n_jobs: int | None = -1,
                 random_state: int | None = 0):
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _estimator(self, y: np.ndarray) -> RandomForestClassifier:
        return RandomForestClassifier(n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
                                      n_jobs=self.n_jobs, random_state=self.random_state)


class GBDTStudent(SklearnStudent):
    """Histogram gradient boosting (LightGBM-style, in scikit-learn). Needs dense input: sparse
    TF-IDF is projected to at most 256 SVD dimensions fitted on the training rows.

    ``n_threads`` caps its OpenMP threads (default 1): on the small training sets of active
    learning threads gain little, and on a busy machine OpenMP spin-waiting made 2 threads
    16x slower than 1 in our measurement. ``None`` uses every core.
    """

    name = "gbdt"
    dense = True

    def __init__(self, max_iter: int = 100, learning_rate: float = 0.1, min_samples_leaf: int = 5,
                 n_threads: int | None = 1, random_state: int | None = 0):
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.min_samples_leaf = min_samples_leaf
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None) -> "GBDTStudent":
        with threadpool_limits(self.n_threads, user_api="openmp"):
            return super().fit(X, y, sample_weight)

    def predict_proba(self, X) -> np.ndarray:
        with threadpool_limits(self.n_threads, user_api="openmp"):
            return super().predict_proba(X)

    def _estimator(self, y: np.ndarray) -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(max_iter=self.max_iter, learning_rate=self.learning_rate,
                                              min_samples_leaf=self.min_samples_leaf, early_stopping=False,
                                              random_state=self.random_state)
