"""Label a whole corpus at a target agreement with the teacher, for a fraction of its cost.

``thrifty label`` / :func:`label`: audit -> validation -> training (stopped by the cost
projection) -> cascade (Learn-then-Test threshold) -> labels on every document + summary.
See ``docs/label.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..corpus import Corpus
from ..errors import ThriftyError
from ..task import Task
from .job import LabelBudgetError, LabelConfig, LabelJob, LabelResult, write_labels
from .projection import Projection, project, stop_buying, stopping_round
from .thresholds import ThresholdChoice, ltt_threshold


def label(
    corpus: Corpus | str | Path,
    labels: Task | str | None,
    teacher: Any = None,
    *,
    out: str | Path | None = None,
    work: str | Path | None = None,
    dry_run: bool = False,
    resume: bool = False,
    text_col: str = "text",
    id_col: str | None = None,
    from_job: str | Path | None = None,
    say: Callable[[str], None] | None = None,
    **config: Any,
) -> LabelResult:
    """Label every document of ``corpus`` (a file or a :class:`Corpus`) with the cheapest mix of
    student and teacher that meets ``target_agreement`` (a :class:`LabelConfig` field, like the
    other keyword arguments). ``teacher`` is a teacher object or a spec (``openai:MODEL``,
    ``replay[:FILE]``, ``local[:MODEL]``). With ``out`` the labels are written there and the
    ledger, model and summary go to ``work`` (default ``OUT.thrifty/``). Progress lines (what is paid for, the
    students fitted, the threshold) go to ``say`` (e.g. ``print``), else to the ``thrifty.label`` logger at INFO.

    ``from_job`` (a finished job's ``OUT.thrifty/``): label new documents drawn like that job's corpus with its
    students and guaranteed threshold (:func:`thrifty.labelling.reuse.label_with_job`); ``labels`` may be None
    (the job's), ``teacher`` None (the job's, rebuilt as it saved it), and only ``audit_size``, ``max_dollars``, ``seed``, ``engine`` and ``ray_address`` apply."""
    from ..corpus import read_corpus
    from ..teachers import make_teacher
    from ..teachers.replay import CONF_COLS, LABEL_COLS, PROBS_COLS

    if from_job is not None:
        from .reuse import REUSE_OPTIONS, job_task

        task = job_task(from_job, sorted(set(config) - REUSE_OPTIONS) + ["resume"] * resume + ["work"] * (work is not None),
                        None if labels is None else (labels if isinstance(labels, Task) else Task.load(labels)).labels)
    elif labels is None or teacher is None:
        raise ThriftyError("Give the label set (a Task, a YAML/JSON file or 'a,b,c') and the teacher (an object or a "
                           "spec such as openai:gpt-4o-mini).")
    else:
        task = labels if isinstance(labels, Task) else Task.load(labels)
    if not isinstance(corpus, Corpus):
        from ..corpus import column_names

        names = column_names(corpus)
        replay = teacher == "replay" or (teacher is None and from_job is not None and _recipe_spec(from_job) == "replay")
        extra = [c for c in LABEL_COLS + CONF_COLS + PROBS_COLS if c in names] if replay else []
        corpus = read_corpus(corpus, text_col=text_col, id_col=id_col, extra_cols=extra)
    if teacher is None and from_job is not None:
        from .reuse import job_teacher

        teacher = job_teacher(from_job, corpus)
    if isinstance(teacher, str):
        teacher = make_teacher(teacher, task, corpus)
    if from_job is not None:
        from .reuse import label_with_job

        result = label_with_job(from_job, corpus, teacher, dry_run=dry_run, say=say,
                                **{k: v for k, v in config.items() if v is not None})
    else:
        if work is None and out is not None:
            work = Path(str(out) + ".thrifty")
        job = LabelJob(task, teacher, LabelConfig(**config), work=work, say=say)
        result = job.run(corpus, dry_run=dry_run, resume=resume)
    if out is not None and not dry_run:
        write_labels(result, corpus, out)
    return result


def _recipe_spec(job_dir: str | Path) -> str | None:
    from .reuse import read_job

    return (read_job(job_dir)[0].get("teacher_recipe") or {}).get("spec")


__all__ = [
    "label", "LabelJob", "LabelConfig", "LabelResult", "LabelBudgetError", "write_labels", "Projection", "project",
    "stop_buying", "stopping_round", "ThresholdChoice", "ltt_threshold",
]
