"""The cascade: send the documents the student is unsure of back to the teacher.

A document goes to the teacher when the student's confidence (max probability) is below a
threshold ``t``. ``t`` is chosen on teacher-labelled validation data (the run's validation
slice, whose answers are already in the ledger) so that the expected agreement of the final
labels with the teacher meets a target::

    agreement(t) = (n_escalated(t) + sum over kept rows of [student == teacher]) / n

An escalated row counts as agreeing because it *gets* the teacher's label. Both the
agreement and the escalation rate are proportions over the ``n`` validation rows, reported
with Wilson score intervals. The functional core (:func:`agreement_curve`,
:func:`choose_threshold`) works on plain arrays; :func:`plan_from_run` wires it to a run
directory and :class:`Cascade` applies it batch by batch through the ledger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ThriftyError
from .teachers.ledger import CachedTeacher
from .teachers.pricing import require_known, teacher_price

ESCALATE_ALL = 2.0  # a threshold above any probability: every document goes to the teacher


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (scipy's ``binomtest(...).proportion_ci(method="wilson")``,
    in closed form: ~1,000x faster, which a server's per-request drift check needs)."""
    from math import sqrt
    from statistics import NormalDist

    if n <= 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p, z2 = successes / n, z * z
    centre, half = p + z2 / (2 * n), z * sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z2 / n)), min(1.0, (centre + half) / (1 + z2 / n))


def agreement_curve(
    confidence: np.ndarray, student: np.ndarray, teacher: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct cut of the validation rows, from escalating none to escalating all.

    Returns ``(thresholds, n_agree, n_escalated)``: escalating the rows with confidence
    ``< thresholds[j]`` sends ``n_escalated[j]`` of them to the teacher and leaves
    ``n_agree[j]`` rows (escalated ones included) agreeing with it. Thresholds sit midway
    between consecutive distinct confidences, so tied rows are never split.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    match = np.asarray(student) == np.asarray(teacher)
    n = len(conf)
    if not (len(match) == n):
        raise ThriftyError("confidence, student and teacher must have the same length.")
    order = np.argsort(conf, kind="stable")
    c, m = conf[order], match[order].astype(np.int64)
    # kept_agree[k]: matches among the rows left to the student when the k lowest are escalated
    kept_agree = np.concatenate([np.cumsum(m[::-1])[::-1], [0]])
    ks = [0] + [k for k in range(1, n) if c[k - 1] < c[k]] + ([n] if n else [])
    ks = np.asarray(sorted(set(ks)), dtype=np.int64)
    thr = np.empty(len(ks), dtype=np.float64)
    for j, k in enumerate(ks):
        thr[j] = 0.0 if k == 0 else ESCALATE_ALL if k == n else (c[k - 1] + c[k]) / 2.0
    return thr, ks + kept_agree[ks], ks


@dataclass
class CascadePlan:
    """The chosen threshold and what validation says it will give."""

    threshold: float
    n_val: int
    est_agreement: float
    agreement_ci: tuple[float, float]
    est_escalation_rate: float
    escalation_ci: tuple[float, float]
    student_agreement: float  # agreement with no escalation at all, for reference
    target_agreement: float | None = None
    max_escalation_rate: float | None = None
    target_met: bool = True
    cost_per_label: float | None = None  # $ per escalated document at the teacher's price (None: price unknown)
    guarantee: str = "estimate"  # how the target was met: see GUARANTEES
    delta: float | None = None  # ltt: the target is missed with probability at most delta

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def forecast(self, n_rows: int) -> dict[str, Any]:
        """Expected escalations and dollars on ``n_rows`` documents, with the 95% interval of the escalation
        rate. An upper bound in dollars: documents whose answer is already in the ledger cost nothing."""
        lo, hi = self.escalation_ci
        esc = [self.est_escalation_rate * n_rows, lo * n_rows, hi * n_rows]
        out: dict[str, Any] = {"rows": n_rows, "escalations": round(esc[0]), "escalations_ci": (round(esc[1]), round(esc[2])),
                               "cost_per_label": self.cost_per_label, "dollars": None, "dollars_ci": None}
        if self.cost_per_label is not None:
            out["dollars"] = esc[0] * self.cost_per_label
            out["dollars_ci"] = (esc[1] * self.cost_per_label, esc[2] * self.cost_per_label)
        return out

    def lines(self) -> list[str]:
        lo, hi = self.agreement_ci
        elo, ehi = self.escalation_ci
        out = [
            f"threshold {self.threshold:.4f} chosen on {self.n_val} teacher-labelled validation rows",
            f"expected agreement with the teacher {self.est_agreement:.3f} (95% CI {lo:.3f}-{hi:.3f}); "
            f"student alone {self.student_agreement:.3f}",
            f"expected escalation rate {self.est_escalation_rate:.3f} (95% CI {elo:.3f}-{ehi:.3f})",
        ]
        if self.guarantee == "ltt" and self.target_agreement is not None:
            if self.threshold >= ESCALATE_ALL and self.est_escalation_rate >= 1.0:
                out.append(f"{self.n_val} validation rows cannot show agreement >= {self.target_agreement} with probability "
                           f">= {1 - (self.delta or 0):.2f} for any threshold, so every document goes to the teacher: "
                           "distill with a larger --val-size, lower the target, or use thrifty label")
            else:
                out.append(f"guarantee: agreement >= {self.target_agreement} with probability >= {1 - (self.delta or 0):.2f} "
                           "(Learn-then-Test on the validation rows)")
        elif self.guarantee != "ltt" and self.target_agreement is not None:
            out.append("no guarantee: the threshold meets the target on the validation "
                       + ("rows' 95% lower bound" if self.guarantee == "wilson" else "point estimate")
                       + " (--guarantee ltt for one)")
        if not self.target_met:
            out.append(f"the escalation cap keeps the expected agreement below the target {self.target_agreement}")
        if self.cost_per_label is not None:
            out.append(f"about ${self.cost_per_label:.6f} per escalated document (validation answers' mean tokens "
                       "at the teacher's price)")
        return out


GUARANTEES = ("ltt", "wilson", "estimate")


def choose_threshold(
    confidence: np.ndarray,
    student: np.ndarray,
    teacher: np.ndarray,
    target_agreement: float | None = None,
    max_escalation_rate: float | None = None,
    conservative: bool = False,
    level: float = 0.95,
    guarantee: str = "estimate",
    delta: float = 0.1,
) -> CascadePlan:
    """The lowest threshold whose validation agreement meets ``target_agreement``.

    ``guarantee``: ``ltt`` (Learn-then-Test, :func:`thrifty.labelling.thresholds.ltt_threshold`: the
    agreement is at least the target with probability ``1 - delta`` over the draw of the validation
    rows), ``wilson`` (the Wilson lower bound of each threshold meets the target; ``conservative``
    means the same) or ``estimate`` (the point estimate does: no guarantee). ``max_escalation_rate``
    caps the validation escalation rate; with no target it picks the highest threshold under the cap
    (the most escalations the cap allows).
    """
    guarantee = "wilson" if conservative else guarantee
    if guarantee not in GUARANTEES:
        raise ThriftyError(f"--guarantee must be one of {', '.join(GUARANTEES)}; got {guarantee!r}.")
    if target_agreement is None and max_escalation_rate is None:
        raise ThriftyError("The cascade needs a target agreement or a maximum number of escalations.")
    if target_agreement is not None and not 0.0 < target_agreement <= 1.0:
        raise ThriftyError(f"--target-agreement must be in (0, 1]; got {target_agreement}.")
    n = len(confidence)
    if n == 0:
        raise ThriftyError("No teacher-labelled validation rows to choose the cascade threshold on.")
    thr, agree, esc = agreement_curve(confidence, student, teacher)
    allowed = np.ones(len(thr), dtype=bool) if max_escalation_rate is None else esc <= max_escalation_rate * n + 1e-9
    j = int(np.flatnonzero(allowed)[-1])  # index 0 (escalate nothing) is always allowed
    met = True
    if target_agreement is not None and guarantee == "ltt":
        from .labelling.thresholds import ltt_threshold  # same layer; imported here (it builds on agreement_curve)

        k = int(np.searchsorted(thr, ltt_threshold(confidence, student, teacher, target_agreement, delta).threshold))
        if allowed[k]:
            j = k
        else:
            met = False
    elif target_agreement is not None:
        score = np.array([wilson_interval(a, n, level)[0] for a in agree]) if guarantee == "wilson" else agree / n
        ok = np.flatnonzero((score >= target_agreement - 1e-12) & allowed)
        if len(ok):
            j = int(ok[0])
        else:
            met = False
    return CascadePlan(
        threshold=float(thr[j]),
        n_val=n,
        est_agreement=float(agree[j] / n),
        agreement_ci=wilson_interval(int(agree[j]), n, level),
        est_escalation_rate=float(esc[j] / n),
        escalation_ci=wilson_interval(int(esc[j]), n, level),
        student_agreement=float(agree[0] / n),
        target_agreement=target_agreement,
        max_escalation_rate=max_escalation_rate,
        target_met=met,
        guarantee=guarantee,
        delta=delta if guarantee == "ltt" else None,
    )


def open_run_teacher(run_dir: str | Path, **price_kw: Any) -> tuple[CachedTeacher, Any]:
    """The run's teacher behind the run's ledger, rebuilt from the run directory like ``distill --resume``
    (runs made by the CLI or from Python). Returns ``(cached_teacher, pool_corpus)``.

    ``price_kw`` may hold ``prices``, ``price_in``, ``price_out``: escalations are priced with them
    instead of the run's own prices."""
    from .run import RunDir
    from .teachers.ledger import Ledger

    rd = RunDir.open(run_dir)
    pool = rd.open_pool()
    teacher = rd.build_teacher(pool, **price_kw)
    run_id = rd.run_id
    return CachedTeacher(teacher, Ledger(rd.ledger_path), run=f"{run_id}:predict" if run_id else "predict"), pool


def validation_rows(run_dir: str | Path) -> np.ndarray:
    """Pool positions of the run's teacher-labelled validation slice (never trained on)."""
    from .run import RunDir

    return RunDir.open(run_dir).validation_rows()


def plan_from_run(
    run_dir: str | Path,
    model: Any,
    cached: CachedTeacher,
    pool: Any,
    target_agreement: float | None = None,
    max_escalation_rate: float | None = None,
    conservative: bool = False,
    guarantee: str = "ltt",
    delta: float = 0.1,
) -> CascadePlan:
    """Choose the threshold on the run's validation slice: student predictions vs ledger answers (free).
    By default with a guarantee (Learn-then-Test, ``delta``); see :func:`choose_threshold`."""
    idx = validation_rows(run_dir)
    texts = [pool.texts[i] for i in idx]
    answers = cached.lookup(texts)
    if len(answers) < len(texts):
        raise ThriftyError(
            f"{len(texts) - len(answers)} of {len(texts)} validation answers are missing from {cached.ledger.path}; "
            "was the ledger moved? Keep the run directory intact."
        )
    price = teacher_price(cached)
    cost = None
    if price is None or price.known:  # what one more answer costs, at today's price
        u = [answers[i].usage for i in range(len(texts))]
        cost = (price.cost(float(np.mean([x.prompt_tokens for x in u])), float(np.mean([x.completion_tokens for x in u])),
                           float(np.mean([x.cached_tokens for x in u])))
                if price is not None else float(np.mean([x.cost_usd for x in u])))
    keep = [i for i in range(len(texts)) if answers[i].label is not None]  # teacher abstentions say nothing
    if not keep:
        raise ThriftyError("The teacher abstained on every validation row; the cascade threshold cannot be chosen.")
    proba = model.predict_proba([texts[i] for i in keep])
    teacher = np.asarray([model.labels.index(answers[i].label) for i in keep])
    plan = choose_threshold(proba.max(axis=1), proba.argmax(axis=1), teacher, target_agreement,
                            max_escalation_rate, conservative, guarantee=guarantee, delta=delta)
    plan.cost_per_label = cost
    return plan


@dataclass
class EscalationCounts:
    escalated: int = 0
    abstained: int = 0
    capped: int = 0  # below the threshold but left to the student because the cap was reached
    capped_by_dollars: int = 0  # below the threshold but left to the student by the dollar cap
    dollars: float = 0.0  # paid for escalations (answers already in the ledger cost nothing)


class Cascade:
    """Applies a threshold batch by batch: low-confidence documents get the teacher's label (via the ledger)."""

    def __init__(self, cached: CachedTeacher, labels: Sequence[str], threshold: float, max_escalations: int | None = None,
                 max_dollars: float | None = None, cost_per_label: float | None = None):
        if max_dollars is not None:
            if max_dollars < 0:
                raise ThriftyError(f"--max-dollars must be 0 or more; got {max_dollars}.")
            require_known(cached, f"--max-dollars {max_dollars:g}")
        self.cached = cached
        self.labels = list(labels)
        self.threshold = float(threshold)
        self.max_escalations = max_escalations
        self.max_dollars = max_dollars
        self.cost_per_label = cost_per_label  # first guess; replaced by the mean paid cost once answers come in
        self.counts = EscalationCounts()
        self._paid = 0

    def _dollar_room(self, n: int) -> int:
        """How many of ``n`` escalations fit under the dollar cap, at the cost per answer seen so far."""
        if self.max_dollars is None:
            return n
        left = self.max_dollars - self.counts.dollars
        per = self.counts.dollars / self._paid if self._paid else (self.cost_per_label or 0.0)
        if left <= 0:
            return 0
        return n if per <= 0 else min(n, int(left // per))

    def apply(self, texts: Sequence[str], pred: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(final label indices, from_teacher mask)``. Every answer is committed to the ledger as it arrives."""
        pred = np.asarray(pred).copy()
        from_teacher = np.zeros(len(pred), dtype=bool)
        low = np.flatnonzero(np.asarray(conf) < self.threshold)
        if self.max_escalations is not None:
            room = max(0, self.max_escalations - self.counts.escalated)
            self.counts.capped += max(0, len(low) - room)
            low = low[:room]
        fit = self._dollar_room(len(low))
        self.counts.capped_by_dollars += len(low) - fit
        low = low[:fit]
        if len(low):
            answers = self.cached.label([texts[i] for i in low])
            paid = {id(a): a for a in answers if not a.cached}  # a text twice in the batch is paid once
            self._paid += len(paid)
            self.counts.dollars += sum(a.usage.cost_usd for a in paid.values())
            self.counts.escalated += len(low)
            for i, a in zip(low, answers):
                if a.label is None:
                    self.counts.abstained += 1
                else:
                    pred[i] = self.labels.index(a.label)
                    from_teacher[i] = True
        return pred, from_teacher
