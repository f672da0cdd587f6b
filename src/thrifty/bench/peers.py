"""small-text's query strategies as thrifty strategies: the peer library in the benchmark.

The adapter hands small-text exactly what our own strategies see: the same pool features,
the same current student (through a ``predict_proba`` shim), the same labelled/unlabelled
indices and the same batch size, then returns small-text's choice unchanged. Nothing of
small-text's selection logic is re-implemented here.

- ``st_breaking_ties``: ``small_text.BreakingTies`` (smallest top-1 minus top-2 margin).
- ``st_kmeans``: ``small_text.EmbeddingKMeans`` on the same dense pool embedding that
  :class:`~thrifty.strategies.diversity.DiversityStrategy` uses (TF-IDF SVD, L2-normalised).
- ``st_class_balancer``: small-text's ClassBalancer rule around ``small_text.BreakingTies``.
  ClassBalancer arrived in small-text 2.0, which the package index here does not offer
  (1.4.1 is pinned), so its documented rule is written out here: the candidates are
  partitioned by the student's predicted class, the batch is split over the classes so
  that the labelled set moves towards balance (slots go, one by one, to the class with the
  fewest labels; a class gets no more slots than it has candidates), and
  ``small_text.BreakingTies`` picks each class's share from its partition.

small-text draws from numpy's global RNG (k-means initialisation); the adapter seeds it
from the run's generator and restores it afterwards, so runs are reproducible.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from ..errors import ThriftyError
from ..strategies import STRATEGIES, PoolState, RandomStrategy
from ..strategies.auto import class_quota
from ..strategies.diversity import PoolEmbedding

PEERS = {"st_breaking_ties": "BreakingTies", "st_kmeans": "EmbeddingKMeans", "st_class_balancer": "ClassBalancer"}


class _Student:
    """small-text calls ``clf.predict_proba(dataset)``; our dataset is an array of pool indices."""

    def __init__(self, state: PoolState):
        self.state = state

    def predict_proba(self, idx: np.ndarray) -> np.ndarray:
        return self.state.proba(np.asarray(idx, dtype=int))


@contextlib.contextmanager
def _seeded_global_rng(rng: np.random.Generator) -> Iterator[None]:
    saved = np.random.get_state()
    np.random.seed(int(rng.integers(2**31 - 1)))
    try:
        yield
    finally:
        np.random.set_state(saved)


class SmallTextStrategy:
    """Run one of small-text's query strategies as a thrifty :class:`~thrifty.strategies.Strategy`."""

    def __init__(self, query_strategy: str = "BreakingTies", dim: int = 64):
        try:
            import small_text
        except ImportError:
            raise ThriftyError("The small-text peer needs the bench extra: pip install 'thrifty[bench]'.") from None
        self.balanced = query_strategy == "ClassBalancer"  # not in small-text 1.4.1: its rule around BreakingTies
        base = "BreakingTies" if self.balanced else query_strategy
        if not hasattr(small_text, base):
            raise ThriftyError(f"small-text has no query strategy {query_strategy!r}.")
        self.query_strategy = query_strategy
        self.name = f"small-text:{query_strategy}"
        self.dim = dim
        self._qs = getattr(small_text, base)()
        self._embedding = PoolEmbedding(dim)

    def select(self, state: PoolState, n: int) -> np.ndarray:
        if state.predict_proba is None:
            return RandomStrategy().select(state, n)
        unl = np.asarray(state.unlabelled, dtype=int)
        n = min(n, len(unl))
        if n == len(unl):
            return unl.copy()
        lab = np.asarray(state.labelled, dtype=int)
        y = state.y if state.y is not None else np.zeros(len(lab), dtype=int)
        kw: dict[str, Any] = {}
        if self.query_strategy == "EmbeddingKMeans":
            kw["embeddings"] = self._embedding(state.X)[np.concatenate([unl, lab])]
        with _seeded_global_rng(state.rng):
            if self.balanced:
                return self._class_balanced(state, unl, lab, y, n)
            sel = self._qs.query(_Student(state), np.arange(state.X.shape[0]), unl, lab, y, n=n, **kw)
        return np.asarray(sel, dtype=int)

    def _class_balanced(self, state: PoolState, unl: np.ndarray, lab: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
        """ClassBalancer: partition by predicted class, split ``n`` towards a balanced labelled set,
        small-text's BreakingTies within each partition."""
        k = state.n_labels
        pred = state.proba(unl).argmax(1)
        counts = np.bincount(y[y >= 0], minlength=k)[:k]
        quota = class_quota(counts, np.bincount(pred, minlength=k)[:k], n)
        out: list[np.ndarray] = []
        for c in np.flatnonzero(quota):
            part = unl[pred == c]
            if quota[c] >= len(part):
                out.append(part)
                continue
            reduced = np.concatenate([part, lab])  # as ClassBalancer does: the partition and the labelled rows
            sel = self._qs.query(_Student(state), reduced, np.arange(len(part)), np.arange(len(part), len(reduced)), y,
                                 n=int(quota[c]))
            out.append(reduced[np.asarray(sel, dtype=int)])
        return np.concatenate(out) if out else np.zeros(0, dtype=int)


def register_peers() -> list[str]:
    """Add the small-text strategies to the registry (when small-text is installed); returns their names.

    small-text is imported only when one of them is built: with torch installed its import
    pulls in its torch and transformers integrations (tens of seconds on a busy machine)."""
    import importlib.util

    if importlib.util.find_spec("small_text") is None:
        return []
    for key, qs in PEERS.items():
        if key not in STRATEGIES.built_in():
            STRATEGIES.register(key, lambda qs=qs, **kw: SmallTextStrategy(qs, **kw))
    return list(PEERS)
