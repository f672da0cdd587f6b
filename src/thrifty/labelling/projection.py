"""What labelling the whole corpus will cost, projected after each round, and when to stop buying.

Total teacher calls = audit + validation + training labels bought so far + the escalations
the current student needs to reach the target on every document not yet labelled. Training
labels are worth buying only while one more batch lowers that total.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

SCALE_1E6 = 1_000_000


@dataclass
class Projection:
    """Projected teacher calls (and dollars) to label ``n_docs`` documents at the target."""

    n_docs: int
    audit: int
    validation: int
    training: int
    escalation_rate: float  # share of the not-yet-labelled documents sent to the teacher
    escalations: float
    calls: float
    dollars: float
    teacher_everything_dollars: float

    @property
    def fraction_of_teacher_everything(self) -> float:
        return self.calls / self.n_docs if self.n_docs else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fraction_of_teacher_everything"] = self.fraction_of_teacher_everything
        return d


def project(
    n_docs: int, audit: int, validation: int, training: int, escalation_rate: float, dollars_per_call: float
) -> Projection:
    """Calls and dollars for ``n_docs`` documents: the fixed labels plus escalations of the rest."""
    fixed = audit + validation + training
    esc = escalation_rate * max(0, n_docs - fixed)
    calls = fixed + esc
    return Projection(
        n_docs=int(n_docs), audit=int(audit), validation=int(validation), training=int(training),
        escalation_rate=float(escalation_rate), escalations=float(esc), calls=float(calls),
        dollars=float(calls * dollars_per_call), teacher_everything_dollars=float(n_docs * dollars_per_call),
    )


def stop_buying(calls: Sequence[float], patience: int = 2) -> bool:
    """True when the last ``patience`` rounds did not lower the projected calls below the best before them."""
    if patience < 1 or len(calls) <= patience:
        return False
    return min(calls[-patience:]) >= min(calls[:-patience])


def stopping_round(calls: Sequence[float], patience: int = 2) -> int:
    """The round at which :func:`stop_buying` first fires (the last round if it never does)."""
    for r in range(len(calls)):
        if stop_buying(calls[: r + 1], patience):
            return r
    return len(calls) - 1
