"""Diversity-aware selection: BADGE-style k-means++ over gradient embeddings.

BADGE (Ash et al., ICLR 2020) represents each candidate by the gradient of the loss of its
own predicted label with respect to the last layer, ``g = (p - e_yhat) (x) x``, and picks
a batch by k-means++ seeding over these vectors: large gradients are uncertain documents,
and D^2 sampling spreads the batch across the pool instead of piling it on one confusing
region. For a linear student ``x`` is the document embedding: the features themselves when
they are dense and narrow, otherwise a TruncatedSVD projection of them (computed once per
pool and reused every round).

The outer product is never built: with ``r = p - e_yhat``,
``<g_i, g_j> = <r_i, r_j> * <x_i, x_j>``, so one k-means++ step costs O(N (K + d)).
It scores the whole pool each round, like entropy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .base import PoolState
from .uncertainty import RandomStrategy


def pool_embedding(X: Any, dim: int = 64, random_state: int = 0) -> np.ndarray:
    """A dense, L2-normalised embedding of the rows of ``X`` (TruncatedSVD when sparse or wider than ``dim``)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    if sp.issparse(X) or X.shape[1] > dim:
        k = max(1, min(dim, X.shape[1] - 1, X.shape[0] - 1))
        E = TruncatedSVD(n_components=k, random_state=random_state).fit_transform(X)
    else:
        E = np.asarray(X, dtype=np.float64)
    return normalize(np.asarray(E, dtype=np.float64))


class PoolEmbedding:
    """The pool embedding of a feature matrix, computed once and reused while ``X`` is the same object."""

    def __init__(self, dim: int = 64):
        self.dim = dim
        self._cache: tuple[int, np.ndarray] | None = None

    def __call__(self, X: Any) -> np.ndarray:
        if self._cache is None or self._cache[0] != id(X):
            self._cache = (id(X), pool_embedding(X, self.dim))
        return self._cache[1]


class DiversityStrategy:
    """BADGE-style batch selection (uncertainty x diversity) over the whole pool."""

    name = "diversity"

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.embedding = PoolEmbedding(dim)  # computed once per feature matrix

    def select(self, state: PoolState, n: int) -> np.ndarray:
        if state.predict_proba is None:
            return RandomStrategy().select(state, n)
        cand = state.unlabelled
        n = min(n, len(cand))
        if n == len(cand):
            return cand.copy()
        E = self.embedding(state.X)[cand]
        P = state.proba(cand)
        R = P.copy()
        R[np.arange(len(R)), P.argmax(1)] -= 1.0
        sq = (R * R).sum(1) * (E * E).sum(1)  # ||g_i||^2
        first = int(np.argmax(sq))
        chosen = [first]
        d2 = np.full(len(cand), np.inf)
        c = first
        for _ in range(n - 1):
            dist = sq + sq[c] - 2.0 * (R @ R[c]) * (E @ E[c])
            d2 = np.minimum(d2, np.clip(dist, 0.0, None))
            d2[chosen] = 0.0
            total = d2.sum()
            if total <= 0:  # every remaining gradient coincides with a chosen one: fill at random
                rest = np.setdiff1d(np.arange(len(cand)), chosen)
                chosen.extend(state.rng.choice(rest, size=n - len(chosen), replace=False).tolist())
                break
            c = int(state.rng.choice(len(cand), p=d2 / total))
            chosen.append(c)
        return cand[np.asarray(chosen, dtype=int)]
