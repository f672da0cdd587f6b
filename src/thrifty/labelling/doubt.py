"""Where the cost goes: how many of the student's disagreements with the teacher fall on documents the teacher
itself was unsure of.

On the recorded Qwen2.5-1.5B teachers the student matched the teacher's answer about as often as the teacher's
own probability for it, and escalating by the teacher's confidence needed as much as escalating by the
student's (``benchmarks/explore/label_teacher_ties.py``, docs/label.md). Where most disagreements fall on the
teacher's doubtful documents, a stronger student or more labels lower the cost little; clearer label
descriptions for the labels the teacher hesitates between, or a lower target, do. Read on the audit: uniform
documents that no student trained on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from ..teachers.base import TeacherLabel

DOUBT = 0.7  # the teacher gives its own answer less than this probability
MIN_DOCS = 20  # fewer audit answers with a confidence than this: nothing to say


def teacher_doubt(answers: Sequence[TeacherLabel], student: np.ndarray, labels: Sequence[str],
                  doubt: float = DOUBT, top: int = 3) -> dict[str, Any] | None:
    """``answers``: the teacher's (non-abstained) answers on audit documents; ``student``: the final student's
    label index on the same documents. None when the teacher states no confidence below 1 (a teacher without
    distributions) or fewer than ``MIN_DOCS`` answers carry one."""
    idx = {x: i for i, x in enumerate(labels)}
    has = [j for j, a in enumerate(answers) if a.confidence is not None and a.label in idx]
    conf = np.asarray([answers[j].confidence for j in has], dtype=float)
    if len(has) < MIN_DOCS or not (conf < 1.0 - 1e-9).any():
        return None
    teacher = np.asarray([idx[answers[j].label] for j in has])
    agree = np.asarray(student)[has] == teacher
    unsure = conf < doubt
    pairs: Counter[tuple[str, str]] = Counter()
    for j in np.asarray(has)[unsure]:
        p = answers[j].probs
        if p is not None and len(p) == len(labels):
            a, b = np.argsort(-np.asarray(p))[:2]
            pairs[tuple(sorted((labels[a], labels[b])))] += 1  # type: ignore[arg-type]
    n_dis = int((~agree).sum())

    def rate(m: np.ndarray) -> float | None:
        return round(float(agree[m].mean()), 4) if m.any() else None

    return {"doubt_below": doubt, "n": len(has), "unsure_share": round(float(unsure.mean()), 4),
            "student_agreement": {"teacher_unsure": rate(unsure), "teacher_sure": rate(~unsure)},
            "disagreements": n_dis,
            "share_of_disagreements_on_unsure": round(float((unsure & ~agree).sum() / n_dis), 4) if n_dis else None,
            "unsure_between": [{"labels": list(k), "docs": v} for k, v in pairs.most_common(top)]}


def doubt_line(d: dict[str, Any]) -> str:
    """One line for the printed summary."""
    line = f"{d['disagreements']} of {d['n']} docs"
    if d["disagreements"]:
        line += (f"; {100 * d['share_of_disagreements_on_unsure']:.0f}% of those among the "
                 f"{100 * d['unsure_share']:.0f}% the teacher answered with < {d['doubt_below']:g} confidence")
    between = ", ".join(f"{' / '.join(p['labels'])} ({p['docs']})" for p in d["unsure_between"][:2])
    return line + (f"; it hesitated most between {between}" if between else "")
