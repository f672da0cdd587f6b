"""The rows and targets a student is fitted on in one round."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp


def training_set(X: Any, y: np.ndarray, n_labels: int, weight: np.ndarray | None = None,
                 extra: tuple[Any, np.ndarray] | None = None,
                 probs: Sequence[np.ndarray | None] | None = None) -> tuple[Any, np.ndarray, np.ndarray | None]:
    """``(X, targets, sample_weight)``: the labelled pool rows ``X, y``, then the ``extra`` rows (generated
    examples, weight 1). With ``probs`` (the teacher's distribution for each pool row, None where it gave
    none) the targets are soft, an (n, K) matrix: one-hot for the extra rows and where no distribution exists."""
    if extra is not None:
        Xa = (sp.vstack if sp.issparse(X) else np.vstack)([X, extra[0]])
        X, y = (Xa.tocsr() if sp.issparse(Xa) else Xa), np.concatenate([y, extra[1]])
        if weight is not None:
            weight = np.concatenate([weight, np.ones(len(y) - len(weight))])
    if probs is None:
        return X, y, weight
    targets = np.eye(n_labels)[y]
    targets[: len(probs)] = [p if p is not None else targets[j] for j, p in enumerate(probs)]
    return X, targets, weight
