"""M-RARU: Monte-Carlo rejection sampling by uncertainty (Luccioli et al., 2025, reconstructed).

Each round draws candidates uniformly at random from the unlabelled pool, in small chunks,
and scores only those with the student. Candidate *x* is accepted with probability

    a(x) = u(x) ** exponent,   u(x) = measure(p_student(x)) in [0, 1]

(accept when r < a(x), r ~ U(0, 1)). ``measure`` is the normalised entropy by default
(``margin`` and ``least_confidence`` are available); ``exponent`` > 1 sharpens towards the
most uncertain documents (our measurements favour 2). It stops once ``n`` are accepted, so
the cost per round is ~ n / mean(a) scored rows, independent of the pool size.

To bound the work when the student is confident everywhere, at most
``max_scored_factor * n`` candidates are scored per round; if fewer than ``n`` were accepted
by then, the remaining slots go to the most uncertain of the rejected candidates.

The paper's method section was not available to us: this is a faithful reconstruction of
its published summary, kept configurable.
"""

from __future__ import annotations

import numpy as np

from .base import MEASURES, PoolState
from .uncertainty import RandomStrategy


class MRARUStrategy:
    name = "mraru"

    def __init__(self, exponent: float = 2.0, measure: str = "entropy", chunk_factor: float = 2.0, max_scored_factor: int = 50):
        if measure not in MEASURES:
            raise ValueError(f"Unknown uncertainty measure {measure!r}; choose from {sorted(MEASURES)}.")
        if exponent <= 0:
            raise ValueError("exponent must be > 0")
        self.exponent = exponent
        self.measure = measure
        self.chunk_factor = chunk_factor
        self.max_scored_factor = max_scored_factor

    def select(self, state: PoolState, n: int) -> np.ndarray:
        if state.predict_proba is None:
            return RandomStrategy().select(state, n)
        n = min(n, len(state.unlabelled))
        # a random permutation is drawn lazily: we only ever touch the prefix we score
        pool = state.unlabelled
        limit = min(len(pool), self.max_scored_factor * n)
        order = state.rng.choice(len(pool), size=limit, replace=False) if limit < len(pool) else state.rng.permutation(len(pool))
        accepted: list[int] = []
        rejected: list[tuple[float, int]] = []
        pos = 0
        chunk = max(1, int(np.ceil(self.chunk_factor * n)))
        while len(accepted) < n and pos < len(order):
            cand = pool[order[pos : pos + chunk]]
            pos += len(cand)
            u = MEASURES[self.measure](state.proba(cand))
            accept = state.rng.random(len(cand)) < np.power(np.clip(u, 0.0, 1.0), self.exponent)
            for c, ok, uu in zip(cand, accept, u):
                if ok and len(accepted) < n:
                    accepted.append(int(c))
                else:
                    rejected.append((float(uu), int(c)))
            remaining = n - len(accepted)
            chunk = max(1, int(np.ceil(self.chunk_factor * remaining)))
        if len(accepted) < n:
            rejected.sort(key=lambda t: -t[0])
            accepted.extend(c for _, c in rejected[: n - len(accepted)])
        return np.asarray(accepted, dtype=int)
