"""Cascade thresholds with a guarantee: Learn-then-Test over the escalation threshold.

The risk of a threshold ``t`` is the share of documents that are *not* escalated and on
which the student disagrees with the teacher (an escalated document gets the teacher's
label, so it always agrees)::

    risk(t) = P(confidence < t is false  and  student != teacher)
    agreement(t) = 1 - risk(t)

On ``n`` teacher-labelled calibration rows that the student never trained on, each
candidate ``t`` is tested against the null hypothesis ``risk(t) > alpha`` (``alpha = 1 -
target``) with the exact binomial p-value ``P(Binomial(n, alpha) <= errors(t))``. The
candidates are tested in a fixed sequence from the most escalation (escalate everything:
zero risk) to the least, at level ``delta``, stopping at the first that is not rejected
(Angelopoulos et al. 2021, "Learn then Test"). The chosen threshold is the last one
rejected, so ``P(risk(t_hat) <= alpha) >= 1 - delta`` over the draw of the calibration rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..cascade import agreement_curve
from ..errors import ThriftyError


@dataclass
class ThresholdChoice:
    """A threshold chosen by Learn-then-Test, with what the calibration rows say about it."""

    threshold: float
    target_agreement: float
    delta: float
    n_cal: int
    errors: int  # calibration rows kept by the student and disagreeing with the teacher
    escalation_rate: float  # share of calibration rows escalated
    agreement: float  # point estimate on the calibration rows
    agreement_lower: float  # one-sided (1 - delta) Clopper-Pearson lower bound
    p_value: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def binomial_p_value(errors: np.ndarray | int, n: int, alpha: float) -> np.ndarray:
    """P(Binomial(n, alpha) <= errors): small when the true risk is unlikely to exceed ``alpha``."""
    from scipy.stats import binom

    return binom.cdf(np.asarray(errors), n, alpha)


def ltt_threshold(
    confidence: np.ndarray,
    student: np.ndarray,
    teacher: np.ndarray,
    target_agreement: float,
    delta: float = 0.1,
) -> ThresholdChoice:
    """The lowest escalation threshold whose agreement is at least ``target_agreement`` with
    probability ``1 - delta`` (fixed-sequence Learn-then-Test on the calibration rows)."""
    if not 0.0 < target_agreement <= 1.0:
        raise ThriftyError(f"--target-agreement must be in (0, 1]; got {target_agreement}.")
    if not 0.0 < delta < 1.0:
        raise ThriftyError(f"delta must be in (0, 1); got {delta}.")
    n = len(confidence)
    if n == 0:
        raise ThriftyError("No teacher-labelled calibration rows: the cascade threshold cannot be chosen.")
    thr, agree, esc = agreement_curve(confidence, student, teacher)
    errors = n - agree
    alpha = 1.0 - target_agreement
    pvals = binomial_p_value(errors, n, alpha) if alpha > 0 else np.where(errors == 0, 0.0, 1.0)
    j = len(thr) - 1  # escalate everything: always safe (zero risk), even if not "rejected"
    for i in range(len(thr) - 1, -1, -1):  # most escalation first
        if pvals[i] > delta:
            break
        j = i
    lower = _cp_lower(int(agree[j]), n, delta)
    return ThresholdChoice(
        threshold=float(thr[j]),  # the last candidate is ESCALATE_ALL
        target_agreement=float(target_agreement), delta=float(delta), n_cal=n, errors=int(errors[j]),
        escalation_rate=float(esc[j] / n), agreement=float(agree[j] / n), agreement_lower=lower,
        p_value=float(pvals[j]),
    )


def _cp_lower(successes: int, n: int, delta: float) -> float:
    """One-sided Clopper-Pearson lower bound at level 1 - delta."""
    from scipy.stats import beta

    return 0.0 if successes == 0 else float(beta.ppf(delta, successes, n - successes + 1))
