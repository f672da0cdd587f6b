"""LLKD: keep what the teacher is sure of and the student is unsure of (Li et al., 2025, reconstructed).

Two signals per document, both in [0, 1]:

- teacher confidence ``c`` = the teacher's stated confidence, else the max of its label
  distribution (``TeacherLabel.confidence``);
- student uncertainty ``u`` = entropy of the student's distribution / log K.

Each signal has one threshold per class, ``tau_T[k]`` and ``tau_S[k]``, that adapt once per
round by an exponential moving average of the class-wise means (FreeMatch-style)::

    tau[k] <- m * tau[k] + (1 - m) * mean{ s(x) : class(x) = k }     (classes seen this round)

with ``m = momentum`` (default 0.8), starting at ``tau_T = 1/K`` and ``tau_S = 0`` (everything
passes early; the gates tighten as the means come in). A document passes the gate when
``c >= tau_T[k]`` and ``u >= tau_S[k]``. ``adaptive=False`` keeps the starting values fixed.

The loop trains with weights ``w = c * u_sel``, normalised to mean 1 over the kept documents,
where ``u_sel`` is the student uncertainty when the document was selected (1 for the random
seed: no student yet). We use the uncertainty *at selection* because a student refitted from
scratch each round is, by construction, sure of its own training documents.

Two settings (``setting``):

- ``pool``: the teacher's answers are already known for the whole pool (a replay recording,
  the paper's setting). Means are taken over the candidates by teacher label; candidates
  passing both gates are taken by decreasing ``c * u``; if fewer than ``n`` pass, the rest are
  filled by ``c * u`` from those that did not.
- ``active``: the teacher is paid only for what we pick, so ``c`` is known only after
  labelling. ``tau_S`` means are taken over the scored candidates by the student's predicted
  class and the ``n`` largest ``u - tau_S[predicted class]`` are picked (class-fair
  uncertainty sampling); ``tau_T`` means are taken over the labelled answers by teacher label.
- ``auto`` (default): ``pool`` when the loop offers free answers (a replay teacher), else ``active``.

At training time (both settings) labels below their class's teacher threshold are multiplied
by ``below_threshold_weight`` (default: 0 = set aside in ``pool``, 0.5 in ``active`` where they
were paid for); abstentions are set aside. Both are counted in the history row
(``llkd_below_teacher_threshold``, ``abstained``) and stay in the run: thresholds move, so a
set-aside label may come back in a later round.

The paper's method section was not available to us: the gate, the update and the weights
above are reconstructions from its summary, and every constant is configurable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ThriftyError
from .base import PoolState, TrainWeights, entropy
from .uncertainty import RandomStrategy

SETTINGS = ("auto", "pool", "active")


def ema_class_means(tau: np.ndarray, scores: np.ndarray, classes: np.ndarray, momentum: float) -> np.ndarray:
    """One EMA step of per-class thresholds towards this round's class-wise means of ``scores``.

    Rows with class -1 (abstained / unknown) are ignored; classes absent this round keep
    their value.
    """
    tau = np.asarray(tau, dtype=float).copy()
    classes = np.asarray(classes, dtype=int)
    for k in np.unique(classes[classes >= 0]):
        tau[k] = momentum * tau[k] + (1.0 - momentum) * float(np.mean(scores[classes == k]))
    return tau


def llkd_weights(confidence: np.ndarray, uncertainty: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``c * u`` normalised to mean 1 over ``keep`` (0 elsewhere); uniform if all products are 0."""
    w = np.where(keep, np.asarray(confidence, float) * np.asarray(uncertainty, float), 0.0)
    total = w.sum()
    if total <= 0:
        w = keep.astype(float)
        total = w.sum()
    return w * (keep.sum() / total) if total > 0 else w


class LLKDStrategy:
    """Teacher-confidence x student-uncertainty selection with adaptive per-class thresholds.

    Also provides ``train_weights`` (which labelled documents to fit on, with what weight)
    and ``state_dict`` / ``load_state_dict`` so the thresholds survive a resume.
    """

    name = "llkd"

    def __init__(
        self,
        setting: str = "auto",
        momentum: float = 0.8,
        adaptive: bool = True,
        teacher_threshold: float | None = None,
        student_threshold: float = 0.0,
        weighted: bool = True,
        soft: bool = False,
        below_threshold_weight: float | None = None,
        chunk: int = 65_536,
    ):
        if setting not in SETTINGS:
            raise ThriftyError(f"Unknown LLKD setting {setting!r}; choose from {list(SETTINGS)}.")
        if not 0.0 <= momentum < 1.0:
            raise ThriftyError(f"LLKD momentum must be in [0, 1); got {momentum}.")
        if below_threshold_weight is not None and not 0.0 <= below_threshold_weight <= 1.0:
            raise ThriftyError(f"below_threshold_weight must be in [0, 1]; got {below_threshold_weight}.")
        self.setting = setting
        self.momentum = momentum
        self.adaptive = adaptive
        self.teacher_threshold = teacher_threshold  # None = 1/K
        self.student_threshold = student_threshold
        self.weighted = weighted
        self.soft = soft
        self.below_threshold_weight = below_threshold_weight
        self.chunk = chunk
        self.tau_teacher_: np.ndarray | None = None
        self.tau_student_: np.ndarray | None = None
        self.selected_uncertainty_: dict[int, float] = {}
        self.setting_: str | None = None
        self.passed_ = 0  # candidates that passed the gates in the last selection

    # ---- persistence (saved in the run's state.json) ---------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "tau_teacher": None if self.tau_teacher_ is None else self.tau_teacher_.tolist(),
            "tau_student": None if self.tau_student_ is None else self.tau_student_.tolist(),
            "selected_uncertainty": {str(k): v for k, v in self.selected_uncertainty_.items()},
            "setting": self.setting_,
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.tau_teacher_ = None if d.get("tau_teacher") is None else np.asarray(d["tau_teacher"], float)
        self.tau_student_ = None if d.get("tau_student") is None else np.asarray(d["tau_student"], float)
        self.selected_uncertainty_ = {int(k): float(v) for k, v in d.get("selected_uncertainty", {}).items()}
        self.setting_ = d.get("setting")

    # ---- thresholds ------------------------------------------------------------------------
    def _init_thresholds(self, k: int) -> None:
        if self.tau_teacher_ is None:
            t = 1.0 / k if self.teacher_threshold is None else self.teacher_threshold
            self.tau_teacher_ = np.full(k, float(t))
            self.tau_student_ = np.full(k, float(self.student_threshold))

    def _update(self, which: str, scores: np.ndarray, classes: np.ndarray) -> None:
        if not self.adaptive:
            return
        attr = "tau_teacher_" if which == "teacher" else "tau_student_"
        setattr(self, attr, ema_class_means(getattr(self, attr), scores, classes, self.momentum))

    def _resolve_setting(self, state: PoolState) -> str:
        setting = self.setting
        if setting == "auto":
            setting = "pool" if state.known is not None else "active"
        if setting == "pool" and state.known is None:
            raise ThriftyError(
                "LLKD setting 'pool' needs the teacher's answers for the whole pool up front (a replay "
                "recording, e.g. --teacher replay). Use setting 'active' to pay only for selected texts."
            )
        self.setting_ = setting
        return setting

    # ---- selection ---------------------------------------------------------------------------
    def _uncertainty(self, state: PoolState, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.empty(len(idx))
        pred = np.empty(len(idx), dtype=int)
        for s in range(0, len(idx), self.chunk):
            p = state.proba(idx[s : s + self.chunk])
            u[s : s + self.chunk] = entropy(p)
            pred[s : s + self.chunk] = p.argmax(axis=1)
        return u, pred

    def select(self, state: PoolState, n: int) -> np.ndarray:
        if state.predict_proba is None:
            return RandomStrategy().select(state, n)
        setting = self._resolve_setting(state)
        self._init_thresholds(state.n_labels)
        n = min(n, len(state.unlabelled))
        cand = state.unlabelled
        u, pred = self._uncertainty(state, cand)
        if setting == "pool":
            yt, ct = state.known(cand)
            self._update("teacher", ct, yt)
            self._update("student", u, yt)
            cls = np.where(yt >= 0, yt, 0)
            passed = (yt >= 0) & (ct >= self.tau_teacher_[cls]) & (u >= self.tau_student_[cls])
            score = np.where(yt >= 0, ct * u, -1.0)
        else:
            if state.y is not None and state.teacher_confidence is not None:
                self._update("teacher", state.teacher_confidence, state.y)
            self._update("student", u, pred)
            score = u - self.tau_student_[pred]
            passed = score >= 0
        # gate first, then the score; a tiny random tiebreak keeps equal scores unbiased
        order = np.lexsort((-(score + state.rng.random(len(cand)) * 1e-9), ~passed))[:n]
        self.passed_ = int(passed.sum())
        for i, uu in zip(cand[order], u[order]):
            self.selected_uncertainty_[int(i)] = float(uu)
        return cand[order]

    # ---- training ----------------------------------------------------------------------------
    def train_weights(self, state: PoolState) -> TrainWeights:
        """Which labelled documents to fit on, with what weight (see the module docstring)."""
        setting = self._resolve_setting(state)
        self._init_thresholds(state.n_labels)
        y = np.asarray(state.y, dtype=int)
        c = np.asarray(state.teacher_confidence, dtype=float)
        answered = y >= 0
        below = answered & (c < self.tau_teacher_[np.where(answered, y, 0)])
        low_w = self.below_threshold_weight
        if low_w is None:
            low_w = 0.0 if setting == "pool" else 0.5
        factor = np.where(below, low_w, 1.0) * answered
        keep = factor > 0
        if self.weighted:
            u = np.asarray([self.selected_uncertainty_.get(int(i), 1.0) for i in state.labelled])
            w = llkd_weights(c, u * factor, keep)
        else:
            w = llkd_weights(np.ones(len(y)), factor, keep)
        used = w > 0
        counts = {
            "llkd_kept": int(used.sum()),
            "llkd_below_teacher_threshold": int(below.sum()),
            "llkd_set_aside": int((answered & ~used).sum()),
            "llkd_tau_teacher_mean": round(float(self.tau_teacher_.mean()), 4),
            "llkd_tau_student_mean": round(float(self.tau_student_.mean()), 4),
        }
        return TrainWeights(mask=used, weights=w, counts=counts, soft=self.soft)
