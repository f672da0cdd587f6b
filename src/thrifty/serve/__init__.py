"""Serve a run's student over HTTP (``thrifty serve``), optionally with the cascade behind it.

Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client). See :mod:`.app` for the API
and :mod:`.batching` for micro-batching.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ThriftyError


def _check(max_dollars: float | None, spec: str, teacher_kw: dict[str, Any]) -> None:
    if max_dollars is None or max_dollars < 0:
        raise ThriftyError("--cascade needs --max-dollars X (0 or more): the most this server may pay the teacher.")
    if teacher_kw.get("max_retries") is not None and not str(spec).startswith("openai"):
        raise ThriftyError(f"--teacher-retries applies to openai teachers; this run's teacher is {spec!r}.")


def make_escalator(run: str | Path, model: Any, target_agreement: float | None, max_dollars: float,
                   guarantee: str = "ltt", delta: float | None = None, **teacher_kw: Any):
    """The run's teacher behind its ledger, with the threshold chosen on the run's validation slice
    (``guarantee``, ``delta`` (default 0.1): see :func:`thrifty.cascade.choose_threshold`).

    ``teacher_kw`` (prices, ``max_retries`` for openai teachers) go to :func:`thrifty.teachers.make_teacher`.
    Returns ``(escalator, plan)``.
    """
    from ..cascade import open_run_teacher, plan_from_run
    from ..run import RunDir
    from .escalate import Escalator

    if target_agreement is None:
        raise ThriftyError("--cascade needs --target-agreement (e.g. 0.95): it sets the confidence threshold.")
    _check(max_dollars, (RunDir.open(run).teacher_recipe or {}).get("spec", ""), teacher_kw)
    cached, pool = open_run_teacher(run, **teacher_kw)
    plan = plan_from_run(run, model, cached, pool, target_agreement, None, guarantee=guarantee,
                         delta=0.1 if delta is None else delta)
    return Escalator(cached, plan.threshold, max_dollars), plan


def job_escalator(job: str | Path, target_agreement: float | None, max_dollars: float, guarantee: str = "ltt",
                  delta: float | None = None, **teacher_kw: Any):
    """A finished ``thrifty label`` job's students, tiers and Learn-then-Test threshold, its teacher (rebuilt from
    job.json, ``teacher_kw`` on top) behind its ledger. The guarantee is the job's: another target, delta or
    guarantee is refused. Returns ``(model, escalator, plan)``."""
    from ..labelling.reuse import JobPlan, JobStudents, job_teacher, read_job
    from ..teachers.ledger import CachedTeacher, Ledger
    from .escalate import Escalator

    plan = JobPlan.read(job)
    other = [f"{name} {given}" for name, given, own in (("--target-agreement", target_agreement, plan.target_agreement),
                                                        ("--delta", delta, plan.delta)) if given not in (None, own)]
    if other or guarantee != "ltt":
        raise ThriftyError(f"{job} is a label job: its threshold guarantees agreement >= {plan.target_agreement} with "
                           f"probability >= {1 - plan.delta:g} (Learn-then-Test), and serving keeps it; "
                           f"{', '.join(other) or '--guarantee ' + guarantee} would need a new job "
                           "(`thrifty label ... --target-agreement T`). Leave those options out.")
    spec = str((read_job(job)[0].get("teacher_recipe") or {}).get("spec", ""))
    _check(max_dollars, spec, teacher_kw)
    if spec.partition(":")[0] == "replay":
        raise ThriftyError(f"{job}'s teacher replays recorded answers: it cannot answer the texts a server is sent. "
                           "Serve the job without --cascade, or label documents that carry the recording with "
                           f"`thrifty label NEW --from-job {job}`.")
    teacher = job_teacher(job, None, **teacher_kw)
    cached = CachedTeacher(teacher, Ledger(Path(job) / "ledger.sqlite"), run="label-serve")
    return JobStudents(job), Escalator(cached, plan.threshold, max_dollars), plan


def build_server_app(run: str | Path, *, cascade: bool = False, target_agreement: float | None = None,
                     max_dollars: float | None = None, guarantee: str = "ltt", delta: float | None = None,
                     conservative: bool = False, teacher_kw: dict[str, Any] | None = None, **app_kw: Any):
    """Load the student of ``run`` (a ``thrifty distill`` run, a model directory, or a ``thrifty label`` job: with
    ``cascade``, its tiers, threshold and teacher, see :func:`job_escalator`) and build the app (``app_kw`` go to
    :func:`.app.build_app`).

    Returns ``(app, plan)``; ``plan`` is None without a cascade.
    """
    from ..predict import load_student, student_dir
    from .app import build_app

    escalator = plan = drift = None
    kw = {k: v for k, v in (teacher_kw or {}).items() if v is not None}
    guarantee = "wilson" if conservative else guarantee
    if cascade and (Path(run) / "job.json").exists():  # a label job: its tiers, threshold and teacher
        model, escalator, plan = job_escalator(run, target_agreement, max_dollars, guarantee, delta, **kw)
        drift = plan.drift
    else:
        model = load_student(student_dir(run))  # a label job's ensemble, as `thrifty predict` classifies with it
        if cascade:
            escalator, plan = make_escalator(run, model, target_agreement, max_dollars, guarantee, delta, **kw)
        elif target_agreement is not None or max_dollars is not None:
            raise ThriftyError("--target-agreement and --max-dollars need --cascade.")
    return build_app(model, escalator=escalator, drift=drift, **app_kw), plan


__all__ = ["build_server_app", "job_escalator", "make_escalator"]
