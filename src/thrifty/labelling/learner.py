"""The training half of ``thrifty label``: buy teacher labels batch by batch and refit the student.

:class:`Learner` is a generator of rounds so that the caller decides when to stop (the
label job stops when one more batch no longer lowers the projected total cost; the
benchmark runs to a label cap and replays the stopping rule afterwards, for every target,
on the very same rounds). Every teacher answer goes through the :class:`CachedTeacher`
it is given, so a re-run with the same seed makes the same selections and pays nothing
twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import TeacherError
from ..strategies import PoolState, make_strategy
from ..students import full_proba, make_student
from ..task import Task
from ..teachers.base import TeacherLabel
from ..teachers.ledger import CachedTeacher


@dataclass
class Round:
    """One fitted student: its probabilities over every document of the corpus."""

    round: int
    n_train: int
    proba: np.ndarray  # (n_docs, n_labels)
    student: Any
    fit_s: float
    pseudo_labels: int = 0


class Learner:
    """Seed set, then rounds of select -> pay -> refit over pool rows ``candidates``.

    ``soft``: fit on the teacher's distributions where it gave them (else one-hot).
    ``self_train``: also fit on unlabelled candidates the student labels with confidence at
    least ``self_train`` (a second fit per round; weight = confidence).
    """

    def __init__(
        self,
        task: Task,
        X: Any,
        texts: Sequence[str],
        cached: CachedTeacher,
        candidates: np.ndarray,
        rng: np.random.Generator,
        *,
        classifier: str = "lr",
        strategy: str = "mraru",
        batch: int = 50,
        seed_size: int = 50,
        soft: bool = False,
        self_train: float | None = None,
        student_params: dict[str, Any] | None = None,
    ):
        self.task, self.X, self.texts, self.cached = task, X, texts, cached
        self.candidates = np.asarray(candidates, dtype=int)
        self.rng = rng
        self.classifier = classifier
        self.strategy = make_strategy(strategy)
        self.batch, self.seed_size = int(batch), int(seed_size)
        self.soft, self.self_train = soft, self_train
        self.student_params = dict(student_params or {})
        self.train_idx: list[int] = []
        self.answers: dict[int, TeacherLabel] = {}
        self.student: Any = None

    def rounds(self) -> Iterator[Round]:
        """Yield a fitted student after the seed set and after each further batch (forever, until the pool runs out)."""
        seed = self.rng.choice(self.candidates, size=min(self.seed_size, len(self.candidates)), replace=False)
        self._buy(seed)
        r = 0
        while True:
            yield self._fit(r)
            left = np.setdiff1d(self.candidates, np.asarray(self.train_idx, dtype=int), assume_unique=True)
            if len(left) == 0:
                return
            state = PoolState(
                X=self.X, unlabelled=left, labelled=np.asarray(self.train_idx, dtype=int), n_labels=self.task.n_labels,
                rng=self.rng, predict_proba=lambda X: full_proba(self.student, X, self.task.n_labels),
                y=self._targets()[0], teacher_confidence=np.asarray(
                    [a.confidence if a.confidence is not None else (1.0 if a.label else 0.0) for a in self._labs()]),
            )
            self._buy(np.asarray(self.strategy.select(state, min(self.batch, len(left))), dtype=int))
            r += 1

    def spent_dollars(self) -> float:
        """Accounted cost of every training answer (cached ones count what they cost when paid)."""
        return float(sum(a.usage.cost_usd for a in self.answers.values()))

    # ---- internals -----------------------------------------------------------------------
    def _buy(self, idx: np.ndarray) -> None:
        labs = self.cached.label([self.texts[i] for i in idx])
        for i, lab in zip(idx, labs):
            self.answers[int(i)] = lab
        self.train_idx.extend(int(i) for i in idx)

    def _labs(self) -> list[TeacherLabel]:
        return [self.answers[i] for i in self.train_idx]

    def _targets(self) -> tuple[np.ndarray, np.ndarray]:
        labs = self._labs()
        y = np.asarray([self.task.index(a.label) if a.label is not None else -1 for a in labs], dtype=int)
        K = self.task.n_labels
        soft = np.eye(K)[np.maximum(y, 0)]
        if self.soft:
            for j, a in enumerate(labs):
                if a.label is not None and a.probs is not None and len(a.probs) == K:
                    soft[j] = a.probs
        return y, soft

    def _fit(self, r: int) -> Round:
        t0 = time.perf_counter()
        y, soft = self._targets()
        keep = y >= 0
        if not keep.any():
            raise TeacherError("The teacher abstained on every training document; check the prompt and the label set.")
        idx = np.asarray(self.train_idx, dtype=int)[keep]
        target = soft[keep] if self.soft else y[keep]
        student = make_student(self.classifier, **self.student_params).fit(self.X[idx], target)
        proba = full_proba(student, self.X, self.task.n_labels)
        n_pseudo = 0
        if self.self_train is not None:
            student, n_pseudo = self._self_train(student, proba, idx, target)
            proba = full_proba(student, self.X, self.task.n_labels)
        self.student = student
        return Round(r, len(self.train_idx), proba, student, time.perf_counter() - t0, n_pseudo)

    def _self_train(self, student: Any, proba: np.ndarray, idx: np.ndarray, target: np.ndarray) -> tuple[Any, int]:
        """Refit with the confident unlabelled candidates as extra, confidence-weighted examples."""
        rest = np.setdiff1d(self.candidates, np.asarray(self.train_idx, dtype=int), assume_unique=True)
        conf = proba[rest].max(axis=1)
        take = rest[conf >= self.self_train]
        if len(take) == 0:
            return student, 0
        pseudo = proba[take].argmax(axis=1)
        if target.ndim == 2:
            pseudo_t = np.eye(self.task.n_labels)[pseudo]
            all_t = np.vstack([target, pseudo_t])
        else:
            all_t = np.concatenate([target, pseudo])
        weight = np.concatenate([np.ones(len(idx)), proba[take].max(axis=1)])
        X = self.X[np.concatenate([idx, take])]
        return make_student(self.classifier, **self.student_params).fit(X, all_t, sample_weight=weight), len(take)
