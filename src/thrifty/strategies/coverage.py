"""Coverage: typical documents of embedding clusters (TypiClust, Hacohen et al., ICML 2022).

With few or no labels, uncertainty is measured by a student that knows almost nothing, and
random labels waste the budget on near-duplicates of the pool's densest regions while
missing whole topics. TypiClust picks instead, for a batch of ``n``:

1. k-means of the pool embedding into ``|labelled| + n`` clusters;
2. the ``n`` largest clusters that hold no labelled document;
3. in each, its most *typical* document: the highest ``1 / mean distance to its k nearest
   neighbours`` inside the cluster (a dense, representative point, not an outlier).

It needs no student, so it is the cold start of :class:`~thrifty.strategies.auto.AutoStrategy`
(the seed set) and a strategy of its own (``coverage``). The embedding is the student's
features: used as they are when dense and narrow, else a 64-d TruncatedSVD (computed once
per pool). Pools larger than ``max_points`` are clustered on a random sample of that size.
"""

from __future__ import annotations

import numpy as np

from .base import PoolState
from .diversity import PoolEmbedding


def typicality(E: np.ndarray, k: int = 20) -> np.ndarray:
    """``1 / mean distance to the k nearest other rows`` of ``E`` (higher = more typical)."""
    m = len(E)
    if m <= 1:
        return np.ones(m)
    k = min(k, m - 1)
    sq = (E * E).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * (E @ E.T), 0.0, None)
    np.fill_diagonal(d2, np.inf)
    near = np.partition(d2, k - 1, axis=1)[:, :k]
    return 1.0 / (np.sqrt(near).mean(1) + 1e-12)


def typical_per_cluster(
    E: np.ndarray, cand: np.ndarray, labelled: np.ndarray, n: int, rng: np.random.Generator,
    max_points: int = 20_000, k_nn: int = 20,
) -> np.ndarray:
    """TypiClust: the most typical candidate of each of the ``n`` largest clusters without a labelled row.

    ``E`` is the embedding of the whole pool; ``cand`` and ``labelled`` are pool indices.
    Returns ``min(n, len(cand))`` distinct candidates."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = min(n, len(cand))
    if n == 0:
        return np.zeros(0, dtype=int)
    if n == len(cand):
        return np.asarray(cand, dtype=int).copy()
    pts = np.asarray(cand, dtype=int)
    if len(pts) > max_points:
        pts = rng.choice(pts, size=max_points, replace=False)
    lab = np.asarray(labelled, dtype=int)
    rows = np.concatenate([pts, lab])
    k = min(len(rows), len(lab) + n)
    seed = int(rng.integers(2**31 - 1))
    km_cls = KMeans if len(rows) * k <= 4_000_000 else MiniBatchKMeans
    km = km_cls(n_clusters=k, n_init=1, random_state=seed, **({"batch_size": 4096} if km_cls is MiniBatchKMeans else {}))
    assign = km.fit_predict(E[rows])
    cand_assign, lab_assign = assign[: len(pts)], assign[len(pts):]
    covered = set(lab_assign.tolist())
    sizes = np.bincount(cand_assign, minlength=k)
    order = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0 and c not in covered]
    chosen: list[int] = []
    for c in order[:n]:
        members = np.flatnonzero(cand_assign == c)
        if len(members) > 2000:  # typicality is quadratic in the cluster size: a sample estimates it
            members = rng.choice(members, size=2000, replace=False)
        chosen.append(int(pts[members[int(np.argmax(typicality(E[pts[members]], k_nn)))]]))
    if len(chosen) < n:  # fewer uncovered clusters than slots: fill with random candidates
        rest = np.setdiff1d(np.asarray(cand, dtype=int), np.asarray(chosen, dtype=int))
        chosen.extend(rng.choice(rest, size=n - len(chosen), replace=False).tolist())
    return np.asarray(chosen, dtype=int)


class CoverageStrategy:
    """TypiClust on the student's features: typical documents of clusters not yet labelled (needs no student)."""

    name = "coverage"

    def __init__(self, dim: int = 64, max_points: int = 20_000, k_nn: int = 20):
        self.embedding = PoolEmbedding(dim)
        self.max_points = max_points
        self.k_nn = k_nn

    def select_seed(self, state: PoolState, n: int) -> np.ndarray:
        """The seed set, chosen before any student exists (``state.predict_proba`` is None)."""
        return self.select(state, n)

    def select(self, state: PoolState, n: int) -> np.ndarray:
        return typical_per_cluster(
            self.embedding(state.X), state.unlabelled, state.labelled, n, state.rng, self.max_points, self.k_nn
        )
