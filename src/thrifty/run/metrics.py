"""Pure round metrics: how a fitted student does against a set of reference labels."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..students import full_proba


def accuracy(student: Any, X: Any, truth: Sequence[str | None], labels: Sequence[str]) -> float | None:
    """Share of rows whose top class is ``truth`` (rows whose truth is not a label are skipped),
    rounded to 4 places; None when no row can be scored."""
    if X.shape[0] == 0:
        return None
    idx = {lab: i for i, lab in enumerate(labels)}
    pred = full_proba(student, X, len(labels)).argmax(1)
    ok = [(p, idx[t]) for p, t in zip(pred, truth) if t in idx]
    if not ok:
        return None
    a = np.asarray(ok)
    return round(float((a[:, 0] == a[:, 1]).mean()), 4)
