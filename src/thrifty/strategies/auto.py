"""``auto``: coverage first, then class-balanced margin; sampled candidates on huge pools.

What each part is for (measured in ``thrifty bench``, see docs/strategies.md):

- **Cold start** (no student yet, i.e. the seed set): TypiClust on the student's features
  (:mod:`.coverage`): one typical document per k-means cluster, so the first labels cover
  the pool's topics instead of repeating its densest region. ``coverage`` is the share of
  the seed set chosen that way (the rest at random; ``False`` = a random seed set), and
  ``coverage_per_class`` (default 5, ``None`` = no cap) caps it at that many documents per
  class: TypiClust's low-budget regime, where coverage beats chance while there are only a
  few labels per class; beyond it the rest of the seed set is random, which keeps the
  pool's class prior in the first student (an uncapped coverage seed on a 3-class set with
  a noisy LLM teacher fell below random in our benchmark).
- **Uncertainty**: the margin between the student's top two classes (BreakingTies). Unlike
  entropy or least-confidence it does not drift towards "uniform over many classes" with
  77+ labels: it asks where the decision between two classes is close.
- **Class balance** (``balance``, the share of the batch it governs): slots are handed out
  by water-filling over the student's predicted classes, always to the class with the
  fewest labels so far (labelled + already given this round), and each class's slots go to
  its most uncertain candidates. Margin alone piles a batch onto one or two confused pairs
  of classes; balancing keeps rare classes in what is asked (as small-text's ClassBalancer).
  The rest of the batch is pure margin.
- **Huge pools** (more than ``huge_pool`` candidates): only a uniform random sample of
  ``candidates`` rows is scored each round (M-RARU's idea: cost independent of pool size),
  then the same rule is applied to the sample.
"""

from __future__ import annotations

import heapq

import numpy as np

from .base import MEASURES, PoolState
from .coverage import PoolEmbedding, typical_per_cluster
from .uncertainty import RandomStrategy


def class_quota(counts: np.ndarray, available: np.ndarray, n: int) -> np.ndarray:
    """Water-filling: ``n`` slots handed one by one to the class with the fewest labels so far
    (``counts`` + slots already given; ties to the lower index), never more than ``available[k]``."""
    quota = np.zeros(len(counts), dtype=int)
    heap = [(int(counts[c]), c) for c in range(len(counts)) if available[c] > 0]
    heapq.heapify(heap)
    while heap and quota.sum() < n:
        cnt, c = heapq.heappop(heap)
        quota[c] += 1
        if quota[c] < available[c]:
            heapq.heappush(heap, (cnt + 1, c))
    return quota


def balanced_top(u: np.ndarray, pred: np.ndarray, counts: np.ndarray, n: int) -> np.ndarray:
    """Positions of ``n`` rows: :func:`class_quota` over the predicted classes, each class's slots
    going to its highest-``u`` rows. ``counts[k]`` = labels of class k so far."""
    k = len(counts)
    quota = class_quota(counts, np.bincount(pred, minlength=k)[:k], n)
    out = [m[np.argsort(-u[m], kind="stable")[:q]] for c, q in enumerate(quota) if q for m in [np.flatnonzero(pred == c)]]
    return np.concatenate(out).astype(int) if out else np.zeros(0, dtype=int)


class AutoStrategy:
    """Coverage seed, then class-balanced margin; sampled candidates when the pool is huge."""

    name = "auto"

    def __init__(
        self, balance: float = 0.5, measure: str = "margin", huge_pool: int = 100_000, candidates: int = 20_000,
        coverage: float = 1.0, coverage_per_class: float | None = 5.0, dim: int = 64, chunk: int = 65_536,
    ):
        if measure not in MEASURES:
            raise ValueError(f"Unknown uncertainty measure {measure!r}; choose from {sorted(MEASURES)}.")
        if not 0.0 <= balance <= 1.0:
            raise ValueError("balance is the share of the batch chosen class-balanced: between 0 and 1.")
        coverage = float(coverage)  # True/False: all or none of the seed set
        if not 0.0 <= coverage <= 1.0:
            raise ValueError("coverage is the share of the seed set chosen for coverage: between 0 and 1.")
        self.coverage = coverage
        self.coverage_per_class = coverage_per_class
        self.balance = balance
        self.measure = measure
        self.huge_pool = huge_pool
        self.candidates = candidates
        self.embedding = PoolEmbedding(dim)
        self.chunk = chunk

    def select_seed(self, state: PoolState, n: int) -> np.ndarray:
        """The seed set, chosen before any student exists (``state.predict_proba`` is None)."""
        return self.select(state, n)

    def select(self, state: PoolState, n: int) -> np.ndarray:
        cand = np.asarray(state.unlabelled, dtype=int)
        n = min(n, len(cand))
        if state.predict_proba is None:
            n_cov = int(round(self.coverage * n))
            if self.coverage_per_class is not None:  # the low-budget regime where coverage beats chance
                n_cov = min(n_cov, int(round(self.coverage_per_class * state.n_labels)))
            if n_cov == 0:
                return RandomStrategy().select(state, n)
            typical = typical_per_cluster(self.embedding(state.X), cand, state.labelled, n_cov, state.rng)
            if n_cov == n:
                return typical
            rest = np.setdiff1d(cand, typical)
            return np.concatenate([typical, state.rng.choice(rest, size=n - n_cov, replace=False)])
        if len(cand) > self.huge_pool:
            cand = state.rng.choice(cand, size=max(n, min(self.candidates, len(cand))), replace=False)
        self.sampled_ = len(cand)  # candidates scored this round (a random sample of them on a huge pool)
        P = np.concatenate([state.proba(cand[s : s + self.chunk]) for s in range(0, len(cand), self.chunk)])
        u = MEASURES[self.measure](P) + state.rng.random(len(cand)) * 1e-9  # random tie-break
        if n >= len(cand):
            return cand.copy()
        n_bal = int(round(self.balance * n))
        chosen = np.zeros(0, dtype=int)
        if n_bal:
            y = state.y if state.y is not None else np.zeros(0, dtype=int)
            counts = np.bincount(y[y >= 0], minlength=P.shape[1])[: P.shape[1]]
            chosen = balanced_top(u, P.argmax(1), counts, n_bal)
        rest = np.ones(len(cand), dtype=bool)
        rest[chosen] = False
        left = np.flatnonzero(rest)
        need = n - len(chosen)
        if need > 0:
            top = left[np.argpartition(-u[left], need - 1)[:need]] if need < len(left) else left
            chosen = np.concatenate([chosen, top])
        return cand[chosen]
