"""Label new documents with a finished label job: its students, its fast tier and its guaranteed threshold.

A ``thrifty label`` job chose its teacher threshold by Learn-then-Test on a uniform sample of its own
corpus. For new documents drawn like that corpus (the same source, more of it) the same policy keeps the
guarantee: with probability at least ``1 - delta`` over the job's validation draw, the expected agreement
with the teacher is at least the job's target. Nothing is bought but the escalations (the documents the
students are unsure of), and optionally an *audit* of the new documents: uniform ones, asked whatever
the students say, which estimate the agreement reached on these documents and so show a drift that the
guarantee does not cover. Every answer goes through the job's ledger: a killed or repeated run pays
nothing twice.

    >>> res = label_with_job("labelled.parquet.thrifty", corpus, teacher, audit_size=200)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..corpus import Corpus
from ..errors import ThriftyError
from ..task import Task
from ..teachers.base import Teacher, TeacherLabel
from ..teachers.ledger import CachedTeacher, Ledger
from .doubt import teacher_doubt
from .job import LabelBudgetError, LabelResult, audit_estimate, final_labels, log
from .tiers import cascade_scores, stream_tiers

REUSE_OPTIONS = frozenset({"audit_size", "max_dollars", "seed", "engine", "ray_address"})  # what applies to new documents
DRIFT_LEVEL = 0.99  # the new escalation rate outside the job's audit interval at this level: a warning


def read_job(job_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(job.json, summary.json)`` of a finished label job, or a clear error."""
    d = Path(job_dir)
    if not (d / "job.json").exists():
        hint = " (a `thrifty distill` run: use `thrifty predict RUN NEW.csv --cascade`)" if (d / "config.json").exists() else ""
        raise ThriftyError(f"{d} is not a `thrifty label` job directory (no job.json){hint}.")
    if not (d / "summary.json").exists():
        raise ThriftyError(f"The label job in {d} has not finished (no summary.json): finish it with "
                           "`thrifty label ... --resume` first; its threshold is chosen at the end.")
    try:
        return (json.loads((d / "job.json").read_text(encoding="utf-8")),
                json.loads((d / "summary.json").read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ThriftyError(f"{d}'s job.json or summary.json is not readable JSON ({e}); the job directory is damaged.") from None


def job_task(job_dir: str | Path, unused: Sequence[str] = (), labels: Sequence[str] | None = None) -> Task:
    """The label set a finished job labelled with, after refusing what new documents through it cannot use:
    ``unused`` (options that shape a new job, named as the caller's user knows them) and another label set."""
    if unused:
        raise ThriftyError("--from-job reuses a finished job's students and threshold; these options shape a new job "
                           "and are not used with it: " + ", ".join(unused) + ".")
    task = Task.from_dict(read_job(job_dir)[0]["task"])
    if labels is not None and list(labels) != list(task.labels):
        raise ThriftyError(f"The label set {list(labels)} differs from the job's {list(task.labels)}: leave it out.")
    return task


def job_teacher(job_dir: str | Path, corpus: Corpus | None, **changes: Any) -> Teacher:
    """The job's teacher, rebuilt from the recipe its job.json keeps (server, env-var name, prices; a replay teacher
    reads ``corpus``'s recorded answers), ``changes`` on top (e.g. ``prices``, ``max_retries``; see
    :func:`thrifty.teachers.rebuild_teacher`). A job written before the recipe was kept: a clear error."""
    from ..teachers import rebuild_teacher

    job, _ = read_job(job_dir)
    recipe = job.get("teacher_recipe")
    if not recipe or not recipe.get("spec"):
        raise ThriftyError(f"The job in {job_dir} does not say how to rebuild its teacher (an older job, or a teacher "
                           "not made by make_teacher): give the job's --teacher and its options.")
    return rebuild_teacher(recipe, Task.from_dict(job["task"]), corpus, **changes)


def _tier_dirs(d: Path, js: dict[str, Any]) -> tuple[Path, Path | None, float]:
    """``(final student's directory, fast tier's directory or None, fast tier's keep threshold)`` of a finished job."""
    from ..predict import student_dir

    fast = js.get("tiers", {}).get("fast")
    fast_dir = d / "fast_model" if fast and (d / "fast_model" / "model.json").exists() else None
    return student_dir(d), fast_dir, float(fast["threshold"]) if fast_dir is not None else float("inf")


class JobStudents:
    """A finished job's student tiers as one model (what ``thrifty serve JOB --cascade`` answers with): the fast
    tier, when the job has one, answers the texts it keeps, the final student the rest. :meth:`tiered_proba` also
    gives the composite score (:func:`.tiers.cascade_scores`) that the job's teacher threshold applies to."""

    def __init__(self, job_dir: str | Path):
        from ..predict import load_student

        acc_dir, fast_dir, self.fast_threshold = _tier_dirs(Path(job_dir), read_job(job_dir)[1])
        self.accurate = load_student(acc_dir)
        self.fast = load_student(fast_dir) if fast_dir is not None else None
        self.labels = list(self.accurate.labels)
        self.name = (f"{self.fast.name} -> " if self.fast is not None else "") + str(self.accurate.name)
        self.features_ = [f for m in (self.fast, self.accurate) if m is not None
                          for f in (getattr(m, "features_", None) or [m.features])]

    def tiered_proba(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(probabilities of the tier that answers, composite score, kept by the fast tier)`` of each text."""
        fp = np.asarray(self.fast.predict_proba(texts)) if self.fast is not None else None
        kept = fp.max(1) >= self.fast_threshold if fp is not None else np.zeros(len(texts), dtype=bool)
        proba = fp.copy() if fp is not None else np.zeros((len(texts), len(self.labels)))
        rest = np.flatnonzero(~kept)
        if len(rest):
            proba[rest] = self.accurate.predict_proba([texts[i] for i in rest])
        _, score, _ = cascade_scores(fp, self.fast_threshold, proba)
        return proba, score, kept

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.tiered_proba(texts)[0]


@dataclass
class JobPlan:
    """What ``thrifty serve JOB --cascade`` escalates by: the job's own threshold and guarantee."""

    job: str
    threshold: float
    target_agreement: float
    delta: float
    escalation_rate: float  # the job's estimate for new documents (its audit)
    audit: int  # the audit's size, which sets that estimate's interval
    fast: str | None = None

    @classmethod
    def read(cls, job_dir: str | Path) -> "JobPlan":
        _, js = read_job(job_dir)
        fast = js.get("tiers", {}).get("fast")
        return cls(str(job_dir), float(js["threshold"]["threshold"]), float(js["target_agreement"]), float(js["delta"]),
                   float(js["escalation_rate_new_docs"]), int(js["teacher_calls"]["audit"]), fast["name"] if fast else None)

    def drift(self, escalated: int, seen: int) -> str | None:
        """:func:`drift_warning` for ``escalated`` of the ``seen`` latest texts a server answered."""
        return drift_warning(escalated, seen, self.escalation_rate, self.audit, what="the latest texts served")

    def lines(self) -> list[str]:
        return [f"threshold {self.threshold:.4f} from the label job {self.job}"
                + (f" (behind its fast tier {self.fast})" if self.fast else ""),
                f"expected escalation rate {self.escalation_rate:.3f} (the job's audit of {self.audit:,}; GET /health "
                "warns when the texts served drift out of line with it)",
                f"guarantee: agreement >= {self.target_agreement} with probability >= {1 - self.delta:g} for texts drawn "
                "like the job's corpus (Learn-then-Test on its validation sample)"]


def label_with_job(
    job_dir: str | Path, corpus: Corpus, teacher: Teacher, *, audit_size: int = 0, max_dollars: float | None = None,
    dry_run: bool = False, seed: int = 0, engine: str = "local", ray_address: str | None = None,
    say: Callable[[str], None] | None = None,
) -> LabelResult:
    """Label every document of ``corpus`` with the finished job in ``job_dir`` (see the module docstring).

    ``teacher`` must be the job's (the same identity: the threshold holds for it). ``dry_run`` runs the
    students (free) and reports the escalations and their expected dollars without paying. ``max_dollars``
    refuses, before paying, a run whose new answers would cost more."""
    say = say or log.info
    d = Path(job_dir)
    job, js = read_job(d)
    task = Task.from_dict(job["task"])
    if json.loads(json.dumps(teacher.identity(), default=str)) != job["teacher"]:
        raise ThriftyError(f"{d} was labelled with the teacher {job['teacher']}, not {teacher.identity()}: its "
                           "threshold holds for its own teacher only. Give the job's --teacher (and its options).")
    if engine not in ("local", "ray"):
        raise ThriftyError(f"Unknown engine {engine!r}: use local or ray.")
    if audit_size < 0:
        raise ThriftyError("--audit-size must be 0 or more.")
    t_start = time.perf_counter()
    n, texts = len(corpus), list(corpus.texts)
    valid = np.flatnonzero(corpus.valid_mask())
    if len(valid) == 0:
        raise ThriftyError("No non-empty text in the corpus: nothing to label.")
    if audit_size > len(valid):
        raise ThriftyError(f"--audit-size {audit_size} is more than the corpus's {len(valid):,} distinct non-empty "
                           "documents; use a smaller one.")
    acc_dir, fast_dir, fast_t = _tier_dirs(d, js)
    fast_info = js.get("tiers", {}).get("fast")
    t = float(js["threshold"]["threshold"])
    target, delta = float(js["target_agreement"]), float(js["delta"])
    say(f"students of {d}: {js['tiers']['student']['name']}" + (f" behind the fast tier {fast_info['name']}" if fast_dir else "")
        + f"; teacher threshold {t:.4f} (agreement >= {target} with probability >= {1 - delta:g} for documents drawn "
        "like the job's corpus)")
    if engine == "ray":
        from ..engines.ray import label_tiers_ray

        pred, score, kept, secs = label_tiers_ray(texts, valid, acc_dir, fast_dir, fast_t, address=ray_address)
    else:
        from ..predict import load_student

        fast = load_student(fast_dir).predict_proba if fast_dir is not None else None
        pred, score, kept, secs = stream_tiers(texts, valid, fast, fast_t, load_student(acc_dir).predict_proba,
                                               say=say, what="documents")
    esc_idx = valid[score < t]
    rng = np.random.default_rng(seed)
    aud_loc = np.sort(rng.choice(len(valid), size=audit_size, replace=False)) if audit_size else np.zeros(0, int)
    aud_idx = valid[aud_loc]
    asked = np.union1d(esc_idx, aud_idx).astype(int)
    calls = {"audit": len(aud_idx), "escalations": len(esc_idx), "total": len(asked)}
    rate, job_rate = len(esc_idx) / len(valid), float(js["escalation_rate_new_docs"])
    drift = drift_warning(len(esc_idx), len(valid), job_rate, int(js["teacher_calls"]["audit"]))
    if drift:
        say(drift)

    ledger = Ledger(d / "ledger.sqlite")
    try:
        cached = {ph: CachedTeacher(teacher, ledger, run=f"label-new:{ph}") for ph in ("audit", "escalations")}
        known = cached["audit"].lookup([texts[i] for i in asked])
        new_calls = len(asked) - len(known)
        per_call = float(js["dollars"]["per_call"] or 0.0)
        expected = new_calls * per_call
        ctx = {"n": n, "calls": calls, "per_call": per_call, "rate": rate, "job_rate": job_rate, "secs": secs,
               "kept": kept, "t_start": t_start, "drift": drift}
        say(f"teacher: {len(esc_idx):,} of {len(valid):,} documents below the threshold ({100 * rate:.1f}%; the job "
            f"expected {100 * job_rate:.1f}% on its audit)" + (f", {len(aud_idx):,} audited" if audit_size else "")
            + f"; {new_calls:,} not in the ledger yet, about ${expected:,.4f}")
        if dry_run:
            return LabelResult([], np.zeros(0), [], _summary(js, d, teacher, ctx, tier=[], dry_run={
                "new_calls": new_calls, "dollars": expected}))
        if max_dollars is not None and 1.1 * expected > max_dollars + 1e-12:  # 10% margin: texts vary in length
            raise LabelBudgetError(
                f"Labelling these documents needs {new_calls:,} new teacher answers: about ${expected:,.4f} (at the "
                f"job's ${per_call:.6f} a call, +10% margin) against --max-dollars ${max_dollars:g}. Nothing was paid: "
                "raise --max-dollars, or label fewer documents at a time.")
        answers: dict[int, TeacherLabel] = {}
        t0 = time.perf_counter()
        requests0 = {ph: c.requests for ph, c in cached.items()}
        for ph, idx in (("audit", aud_idx), ("escalations", np.setdiff1d(esc_idx, aud_idx))):
            if len(idx):
                answers.update(zip((int(i) for i in idx), cached[ph].label([texts[i] for i in idx])))
        teacher_s = time.perf_counter() - t0
        paid = {ph: c.requests - requests0[ph] for ph, c in cached.items()}
    finally:
        ledger.close()

    labels, confidence, tier = final_labels(texts, task.labels, ((valid, pred, score, kept),), answers)
    est = doubt = None
    if audit_size:
        ok = np.asarray([answers[int(i)].label is not None for i in aud_idx], dtype=bool)
        a_teacher = np.asarray([task.index(answers[int(i)].label) for i in aud_idx[ok]], dtype=int)
        a_loc = aud_loc[ok]
        est = audit_estimate(np.where(score[a_loc] < t, a_teacher, pred[a_loc]), a_teacher)
        doubt = teacher_doubt([answers[int(i)] for i in aud_idx[ok]], pred[a_loc], task.labels)
        lo, hi = est["ci95"]
        if est["agreement"] is not None:
            say(f"audit of the new documents: agreement with the teacher {est['agreement']:.3f} (95% CI {lo:.3f}-"
                f"{hi:.3f}, {est['n']} documents) for a target of {target}")
    spent = float(sum(a.usage.cost_usd for a in answers.values()))
    summary = _summary(js, d, teacher, ctx, tier=tier, paid=paid, spent=spent, est=est, doubt=doubt,
                       teacher_s=teacher_s, abstentions=sum(a.label is None for a in answers.values()))
    return LabelResult(labels, confidence, tier, summary, [])


def drift_warning(escalated: int, n: int, job_rate: float, job_audit: int, what: str = "these documents") -> str | None:
    """A warning when ``escalated`` of ``n`` documents going to the teacher is out of line with the job's audit
    estimate (their :data:`DRIFT_LEVEL` Wilson intervals do not overlap): they may not be drawn like the job's corpus,
    which the guarantee assumes. None below 100 documents."""
    from ..cascade import wilson_interval

    if job_audit < 1 or n < 100:
        return None
    lo, hi = wilson_interval(round(job_rate * job_audit), job_audit, DRIFT_LEVEL)
    seen_lo, seen_hi = wilson_interval(escalated, n, DRIFT_LEVEL)
    if seen_hi >= lo and seen_lo <= hi:
        return None
    return (f"warning: {100 * escalated / n:.1f}% of {what} ({escalated:,} of {n:,}) go to the teacher, outside the "
            f"{100 * lo:.1f}-{100 * hi:.1f}% the job's audit predicts ({int(DRIFT_LEVEL * 100)}% intervals): they may not "
            "be drawn like the job's corpus, and the guarantee assumes they are. `thrifty label FILE --from-job JOB "
            "--audit-size N` measures the agreement reached on them; a new `thrifty label` job on them gives the "
            "guarantee back.")


def _summary(js: dict[str, Any], d: Path, teacher: Teacher, ctx: dict[str, Any], *, tier: list[str],
             paid: dict[str, int] | None = None, spent: float = 0.0, est: dict[str, Any] | None = None,
             doubt: dict[str, Any] | None = None, teacher_s: float = 0.0, abstentions: int = 0,
             dry_run: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's summary; ``ctx`` holds what the students gave (``n``, ``calls``, ``per_call``, ``rate``,
    ``job_rate``, ``secs``, ``kept``, ``t_start``, ``drift``)."""
    n, calls, per_call, secs, kept = ctx["n"], ctx["calls"], ctx["per_call"], ctx["secs"], ctx["kept"]
    everything = n * per_call
    tiers: dict[str, Any] = {
        "student": {"name": js["tiers"]["student"]["name"], "docs": tier.count("student"), "docs_read": int((~kept).sum()),
                    "seconds": round(secs["accurate_s"], 3)},
        "teacher": {"docs": tier.count("teacher"), "escalated": calls["escalations"], "seconds": round(teacher_s, 3)}}
    if "fast" in js.get("tiers", {}):
        tiers = {"fast": {"name": js["tiers"]["fast"]["name"], "docs": tier.count("fast"), "docs_read": len(kept),
                          "seconds": round(secs["fast_s"], 3)}, **tiers}
    if "ray_s" in secs:
        tiers["ray"] = {"docs": len(kept), "seconds": round(secs["ray_s"], 3)}
    return {
        "from_job": str(d), "n_docs": n, "target_agreement": js["target_agreement"], "delta": js["delta"],
        "teacher": teacher.identity(), "threshold": js["threshold"],
        "teacher_calls": {**calls, "pct_of_corpus": round(100 * calls["total"] / n, 2) if n else None},
        "paid_this_invocation": paid or {}, "abstentions": abstentions,
        "dollars": {"spent": round(spent, 6), "teacher_everything": round(everything, 6),
                    "pct_of_teacher_everything": round(100 * spent / everything, 2) if everything else None,
                    "per_call": per_call},
        "escalation_rate": ctx["rate"], "job_escalation_rate_new_docs": ctx["job_rate"], "drift_warning": ctx["drift"],
        "estimated_agreement": {"new_docs_audit": est, "job_audit": js["estimated_agreement"]["cascade_on_audit"]},
        "teacher_doubt": doubt,
        "guarantee": (f"agreement >= {js['target_agreement']} with probability >= {1 - float(js['delta']):g} for "
                      "documents drawn like the job's corpus (Learn-then-Test on its validation sample)"),
        "tiers": tiers, "wall_s": round(time.perf_counter() - ctx["t_start"], 3),
        **({"dry_run": dry_run} if dry_run is not None else {}),
    }
