"""The strategy protocol: ``select(state, n) -> pool indices`` to send to the teacher next."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np


@dataclass
class PoolState:
    """What a strategy may look at. ``proba(idx)`` scores pool rows with the current student
    (full label axis) and counts how many rows were scored, so cost is measurable."""

    X: Any
    unlabelled: np.ndarray  # candidate pool indices
    labelled: np.ndarray  # pool indices already labelled (train set)
    n_labels: int
    rng: np.random.Generator
    predict_proba: Callable[[Any], np.ndarray] | None = None  # None before the first student exists
    y: np.ndarray | None = None  # label indices of `labelled` (-1 = abstained)
    teacher_confidence: np.ndarray | None = None
    # (label indices, confidences) of pool rows whose teacher answers cost nothing (a recording); None otherwise
    known: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    scored: int = 0

    def proba(self, idx: np.ndarray) -> np.ndarray:
        if self.predict_proba is None:
            raise RuntimeError("No student yet: the strategy must fall back to random selection.")
        self.scored += len(idx)
        return self.predict_proba(self.X[idx])


@dataclass
class TrainWeights:
    """What a strategy's optional ``train_weights(state)`` returns: which labelled rows
    (aligned with ``state.labelled``) the student fits on, their sample weights, and counts
    for the history row (set-aside labels are counted, never silently dropped)."""

    mask: np.ndarray
    weights: np.ndarray
    counts: dict[str, Any] = field(default_factory=dict)
    soft: bool = False  # fit on the teacher's label distributions instead of its labels


@runtime_checkable
class Strategy(Protocol):
    name: str

    def select(self, state: PoolState, n: int) -> np.ndarray: ...


@runtime_checkable
class ColdStartStrategy(Protocol):
    """A strategy that also picks the seed set, before any student exists (e.g. TypiClust coverage)."""

    def select_seed(self, state: PoolState, n: int) -> np.ndarray: ...


@runtime_checkable
class StatefulStrategy(Protocol):
    """A strategy with state that is saved with the run and restored on resume (e.g. LLKD's thresholds)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, d: dict[str, Any]) -> None: ...


@runtime_checkable
class WeightingStrategy(Protocol):
    """A strategy that also gates and weights the labels the student is fitted on (e.g. LLKD)."""

    def train_weights(self, state: PoolState) -> TrainWeights: ...


# ---- uncertainty measures (pure functions, rows = documents) --------------------------------
def entropy(p: np.ndarray) -> np.ndarray:
    """Entropy normalised by log K: 0 = certain, 1 = uniform."""
    k = p.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return h / np.log(k) if k > 1 else np.zeros(len(p))


def least_confidence(p: np.ndarray) -> np.ndarray:
    """1 - max p, scaled to [0, 1] by K/(K-1)."""
    k = p.shape[1]
    return (1.0 - p.max(axis=1)) * k / (k - 1)


def margin(p: np.ndarray) -> np.ndarray:
    """1 - (p1 - p2): 1 when the top two tie (BreakingTies), 0 when certain."""
    if p.shape[1] < 2:
        return np.zeros(len(p))
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


MEASURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "entropy": entropy,
    "least_confidence": least_confidence,
    "margin": margin,
}
