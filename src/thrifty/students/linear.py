"""Linear students: logistic regression (the core default) and a calibrated linear SVM."""

from __future__ import annotations

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from .sk import SklearnStudent


class LogisticStudent(SklearnStudent):
    """Multinomial logistic regression (lbfgs). With soft labels the expanded weighted loss is
    exactly the soft-target cross-entropy."""

    name = "lr"

    def __init__(self, C: float = 10.0, max_iter: int = 1000, random_state: int | None = 0):
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    def _estimator(self, y: np.ndarray) -> LogisticRegression:
        return LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)


class SVMStudent(SklearnStudent):
    """Linear SVM (squared hinge) with Platt-scaled probabilities.

    Probabilities come from ``CalibratedClassifierCV(method="sigmoid")`` with up to ``cv``
    stratified folds; when some class has a single example (common early in active learning on
    many classes), folds are impossible and the probabilities are a softmax of the SVM margins
    instead (monotone in the margin, so uncertainty rankings stay meaningful).
    """

    name = "svm"

    def __init__(self, C: float = 1.0, cv: int = 3, random_state: int | None = 0):
        self.C = C
        self.cv = cv
        self.random_state = random_state

    def _estimator(self, y: np.ndarray):
        svm = LinearSVC(C=self.C, random_state=self.random_state)
        folds = min(self.cv, int(np.bincount(y)[np.unique(y)].min()))
        if folds >= 2:
            return CalibratedClassifierCV(svm, method="sigmoid", cv=folds)
        return _SoftmaxMargins(svm)


class _SoftmaxMargins:
    """Softmax over a linear SVM's decision values (one-vs-rest margins)."""

    def __init__(self, svm: LinearSVC):
        self.svm = svm

    def fit(self, X, y, sample_weight=None) -> "_SoftmaxMargins":
        self.svm.fit(X, y, sample_weight=sample_weight)
        self.classes_ = self.svm.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        d = self.svm.decision_function(X)
        if d.ndim == 1:  # binary: one margin
            d = np.column_stack([-d, d])
        d = d - d.max(axis=1, keepdims=True)
        e = np.exp(d)
        return e / e.sum(axis=1, keepdims=True)
