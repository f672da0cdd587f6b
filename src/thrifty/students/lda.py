"""Linear discriminant analysis with sample weights and Ledoit-Wolf shrinkage.

scikit-learn's LDA takes no ``sample_weight``; weights (and so soft labels) matter here, so the
closed form is written out: weighted class means and priors, a shared within-class covariance
of the weighted residuals, shrunk towards a scaled identity (Ledoit-Wolf, or a fixed amount).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.covariance import ledoit_wolf

from .sk import SklearnStudent


class WeightedLDA(ClassifierMixin, BaseEstimator):
    """Gaussian LDA on dense features. ``shrinkage``: "auto" (Ledoit-Wolf) or a float in [0, 1]."""

    def __init__(self, shrinkage: str | float = "auto"):
        self.shrinkage = shrinkage

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "WeightedLDA":
        X = np.asarray(X, dtype=np.float64)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        self.classes_, yi = np.unique(y, return_inverse=True)
        onehot = np.zeros((len(y), len(self.classes_)))
        onehot[np.arange(len(y)), yi] = w
        wk = onehot.sum(axis=0)
        keep = wk > 0
        self.classes_, onehot, wk = self.classes_[keep], onehot[:, keep], wk[keep]
        yi = np.cumsum(keep)[yi] - 1
        means = onehot.T @ X / wk[:, None]
        resid = (X - means[yi]) * np.sqrt(w / w.sum())[:, None]
        d = X.shape[1]
        if self.shrinkage == "auto":
            cov, _ = ledoit_wolf(resid * np.sqrt(len(y)), assume_centered=True)
        else:
            emp = resid.T @ resid
            cov = (1 - float(self.shrinkage)) * emp + float(self.shrinkage) * np.trace(emp) / d * np.eye(d)
        cov += 1e-8 * max(np.trace(cov) / d, 1e-12) * np.eye(d)
        self.coef_ = scipy.linalg.solve(cov, means.T, assume_a="pos").T
        self.intercept_ = -0.5 * np.sum(means * self.coef_, axis=1) + np.log(wk / wk.sum())
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


class LDAStudent(SklearnStudent):
    """Shrinkage LDA; sparse TF-IDF input is first projected to at most 256 SVD dimensions."""

    name = "lda"
    dense = True

    def __init__(self, shrinkage: str | float = "auto"):
        self.shrinkage = shrinkage

    def _estimator(self, y: np.ndarray) -> WeightedLDA:
        return WeightedLDA(shrinkage=self.shrinkage)
