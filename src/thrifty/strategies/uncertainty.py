"""Random sampling and pool-scoring uncertainty strategies (least-confidence, margin, entropy)."""

from __future__ import annotations

import numpy as np

from .base import MEASURES, PoolState


class RandomStrategy:
    name = "random"

    def select(self, state: PoolState, n: int) -> np.ndarray:
        n = min(n, len(state.unlabelled))
        return state.rng.choice(state.unlabelled, size=n, replace=False)


class UncertaintyStrategy:
    """Score every unlabelled row and take the ``n`` most uncertain (ties broken at random)."""

    def __init__(self, measure: str = "entropy", chunk: int = 65_536):
        if measure not in MEASURES:
            raise ValueError(f"Unknown uncertainty measure {measure!r}; choose from {sorted(MEASURES)}.")
        self.measure = measure
        self.name = measure
        self.chunk = chunk

    def select(self, state: PoolState, n: int) -> np.ndarray:
        if state.predict_proba is None:
            return RandomStrategy().select(state, n)
        n = min(n, len(state.unlabelled))
        cand = state.unlabelled
        u = np.empty(len(cand))
        for s in range(0, len(cand), self.chunk):
            u[s : s + self.chunk] = MEASURES[self.measure](state.proba(cand[s : s + self.chunk]))
        tiebreak = state.rng.random(len(cand)) * 1e-9
        top = np.argpartition(-(u + tiebreak), n - 1)[:n] if n < len(cand) else np.arange(len(cand))
        return cand[top]
