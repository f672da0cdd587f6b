"""Serve a run's student over HTTP (``thrifty serve``), optionally with the cascade behind it.

Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client). See :mod:`.app` for the API
and :mod:`.batching` for micro-batching.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ThriftyError


def make_escalator(run: str | Path, model: Any, target_agreement: float | None, max_dollars: float,
                   guarantee: str = "ltt", delta: float = 0.1, **teacher_kw: Any):
    """The run's teacher behind its ledger, with the threshold chosen on the run's validation slice
    (``guarantee``, ``delta``: see :func:`thrifty.cascade.choose_threshold`).

    ``teacher_kw`` (prices, ``max_retries`` for openai teachers) go to :func:`thrifty.teachers.make_teacher`.
    Returns ``(escalator, plan)``.
    """
    from ..cascade import open_run_teacher, plan_from_run
    from .escalate import Escalator

    if target_agreement is None:
        raise ThriftyError("--cascade needs --target-agreement (e.g. 0.95): it sets the confidence threshold.")
    if max_dollars is None or max_dollars < 0:
        raise ThriftyError("--cascade needs --max-dollars X (0 or more): the most this server may pay the teacher.")
    if teacher_kw.get("max_retries") is not None:
        from ..run import RunDir

        teacher = (RunDir.open(run).teacher_recipe or {}).get("spec", "")
        if not str(teacher).startswith("openai"):
            raise ThriftyError(f"--teacher-retries applies to openai teachers; this run's teacher is {teacher!r}.")
    cached, pool = open_run_teacher(run, **teacher_kw)
    plan = plan_from_run(run, model, cached, pool, target_agreement, None, guarantee=guarantee, delta=delta)
    return Escalator(cached, plan.threshold, max_dollars), plan


def build_server_app(run: str | Path, *, cascade: bool = False, target_agreement: float | None = None,
                     max_dollars: float | None = None, guarantee: str = "ltt", delta: float = 0.1,
                     conservative: bool = False, teacher_kw: dict[str, Any] | None = None, **app_kw: Any):
    """Load the student of ``run`` and build the app (``app_kw`` go to :func:`.app.build_app`).

    Returns ``(app, plan)``; ``plan`` is None without a cascade.
    """
    from ..predict import load_student, student_dir
    from .app import build_app

    model = load_student(student_dir(run))  # a label job's ensemble, as `thrifty predict` classifies with it
    escalator = plan = None
    if cascade:
        escalator, plan = make_escalator(run, model, target_agreement, max_dollars, "wilson" if conservative else guarantee, delta,
                                         **{k: v for k, v in (teacher_kw or {}).items() if v is not None})
    elif target_agreement is not None or max_dollars is not None:
        raise ThriftyError("--target-agreement and --max-dollars need --cascade.")
    return build_app(model, escalator=escalator, **app_kw), plan


__all__ = ["build_server_app", "make_escalator"]
