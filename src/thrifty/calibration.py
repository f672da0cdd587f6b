"""How well a teacher's distributions match reality: accuracy, ECE, and prior correction.

Pure functions over arrays (probs: ``(n, k)`` rows summing to 1; ``y``: class indices),
plus :func:`check_teacher`, which asks a teacher about a labelled sample and reports both
the raw and the prior-corrected numbers.

Prior correction: an LLM teacher often favours some labels whatever the text (ag_news:
Qwen sends most Sci/Tech to Business). Dividing each distribution by the teacher's mean
predicted distribution on an *unlabelled* sample, ``q_i ∝ p_i / prior_i``, removes that
bias without any labels (Zhao et al., 2021, "Calibrate Before Use", with the mean
prediction as the content-free estimate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from .errors import ThriftyError
from .teachers.base import Teacher


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """ECE: sum over equal-width confidence bins of (bin share) x |accuracy - mean confidence|.

    Confidence is the top probability; bins are ``(lo, hi]`` (the first also holds 0).
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y)
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise ThriftyError(f"ECE needs an (n, k) probability array and n labels; got {p.shape} and {y.shape}.")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def estimate_prior(probs: np.ndarray) -> np.ndarray:
    """The teacher's mean predicted distribution (needs no labels)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ThriftyError("Estimating the teacher's prior needs at least one predicted distribution.")
    return p.mean(axis=0)


def prior_correct(probs: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Divide each distribution by ``prior`` and renormalise each row."""
    p = np.asarray(probs, dtype=np.float64) / np.clip(np.asarray(prior, dtype=np.float64), 1e-12, None)
    return p / p.sum(axis=1, keepdims=True)


@dataclass
class CalibrationReport:
    """Teacher quality on a labelled sample, raw and prior-corrected."""

    n: int
    abstained: int
    accuracy: float
    ece: float
    accuracy_corrected: float | None = None
    ece_corrected: float | None = None
    prior: list[float] | None = None
    prior_n: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibration_report(probs: np.ndarray, y: np.ndarray, prior: np.ndarray | None = None, n_bins: int = 10,
                       abstained: int = 0, prior_n: int = 0) -> CalibrationReport:
    """Accuracy and ECE of ``probs`` against ``y``, and of the prior-corrected probs if ``prior`` is given."""
    p, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    rep = CalibrationReport(n=len(y), abstained=abstained, accuracy=float((p.argmax(1) == y).mean()),
                            ece=expected_calibration_error(p, y, n_bins))
    if prior is not None:
        q = prior_correct(p, prior)
        rep.accuracy_corrected = float((q.argmax(1) == y).mean())
        rep.ece_corrected = expected_calibration_error(q, y, n_bins)
        rep.prior = [float(x) for x in prior]
        rep.prior_n = prior_n
    return rep


def check_teacher(
    teacher: Teacher,
    texts: Sequence[str],
    gold: Sequence[str],
    unlabelled: Sequence[str] | None = None,
    n_bins: int = 10,
) -> CalibrationReport:
    """Ask ``teacher`` about ``texts`` and report accuracy and ECE against ``gold``.

    The prior is estimated from the teacher's answers on ``unlabelled`` (default: the same
    texts, whose gold labels it never sees). Abstentions count as wrong in accuracy and are
    left out of ECE.
    """
    task = teacher.task
    idx = {lab: i for i, lab in enumerate(task.labels)}
    keep = [i for i, g in enumerate(gold) if g in idx]
    if not keep:
        raise ThriftyError(f"None of the gold labels are in the label set {list(task.labels)}.")
    answers = teacher.label([texts[i] for i in keep])
    ok = [j for j, a in enumerate(answers) if a.probs is not None]
    if not ok:
        raise ThriftyError("The teacher abstained on every text; check the prompt and the label set.")
    probs = np.stack([answers[j].probs for j in ok])
    y = np.asarray([idx[gold[keep[j]]] for j in ok])
    if unlabelled is None:
        prior_probs = probs
    else:
        extra = [a.probs for a in teacher.label(list(unlabelled)) if a.probs is not None]
        prior_probs = np.stack(extra) if extra else probs
    rep = calibration_report(probs, y, estimate_prior(prior_probs), n_bins, abstained=len(keep) - len(ok),
                             prior_n=len(prior_probs))
    if rep.abstained:  # abstentions are wrong answers
        rep.accuracy = rep.accuracy * len(ok) / len(keep)
        if rep.accuracy_corrected is not None:
            rep.accuracy_corrected = rep.accuracy_corrected * len(ok) / len(keep)
    rep.n = len(keep)
    return rep
