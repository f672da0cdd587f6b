"""Which teacher labels are most likely wrong: cross-fitted student against teacher.

The functional core (:func:`out_of_fold_proba`, :func:`suspicion`) works on arrays;
:func:`audit_run` applies it to a run directory with the run's own features and student.
Each paid label is scored by a student that never saw it (K-fold cross-fitting), so a
label the student merely memorised cannot hide. Two scores (docs/report.md):

- ``self``: ``1 - p_student(teacher's label)`` (what cleanlab calls self-confidence);
- ``both`` (default): the probability that the true class differs from the teacher's label
  when the student's out-of-fold distribution and the teacher's own distribution (or its
  stated confidence, spread over the other labels) are combined as a product of experts,
  ``1 - p_y q_y / sum_k p_k q_k``. A confident student that disagrees with an unsure
  teacher ranks first; a sure teacher needs a surer student. Teacher confidences are
  clipped to [0.01, 0.99] (stated confidences of 1.0 are not certainties).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import ThriftyError

METHODS = ("both", "self")
CLIP = (0.01, 0.99)


def out_of_fold_proba(X: Any, y: np.ndarray, make_clf: Callable[[], Any], n_labels: int, n_folds: int = 5,
                      random_state: int = 0) -> np.ndarray:
    """(n, K) probabilities for each row from a classifier fitted on the other folds (stratified)."""
    from sklearn.model_selection import StratifiedKFold

    from ..students import full_proba

    y = np.asarray(y, dtype=int)
    counts = np.bincount(y, minlength=n_labels)
    folds = int(min(n_folds, max(2, counts[counts > 0].min())))
    if len(y) < 2 * folds:
        raise ThriftyError(f"Only {len(y)} labelled documents: too few to cross-fit an audit.")
    out = np.zeros((len(y), n_labels))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes smaller than n_folds: StratifiedKFold warns and copes
        split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state).split(np.zeros(len(y)), y)
        for tr, te in split:
            clf = make_clf().fit(X[tr], y[tr])
            out[te] = full_proba(clf, X[te], n_labels)
    return out


def teacher_distribution(y: np.ndarray, n_labels: int, confidence: np.ndarray | None = None,
                         probs: np.ndarray | None = None) -> np.ndarray:
    """The teacher's distribution per row: its own ``probs`` where given, else ``confidence`` on its label
    and the rest spread evenly (confidence 1 when unknown); clipped away from 0 and 1."""
    n = len(y)
    c = np.ones(n) if confidence is None else np.nan_to_num(np.asarray(confidence, dtype=float), nan=1.0)
    c = np.clip(c, *CLIP)
    q = np.repeat(((1 - c) / max(1, n_labels - 1))[:, None], n_labels, axis=1)
    q[np.arange(n), y] = c
    if probs is not None:
        # a real distribution only: recordings of label + confidence come as one-hot rows
        have = ~np.isnan(probs).any(axis=1) & (np.nan_to_num(probs).max(axis=1) < 1.0)
        q[have] = np.clip(probs[have], CLIP[0] / n_labels, 1.0)
    return q / q.sum(axis=1, keepdims=True)


def suspicion(student: np.ndarray, y: np.ndarray, teacher: np.ndarray | None = None, method: str = "both") -> np.ndarray:
    """How likely each teacher label ``y`` is wrong, from the student's out-of-fold probabilities
    (and, for ``both``, the teacher's distribution). Higher = more suspect."""
    y = np.asarray(y, dtype=int)
    rows = np.arange(len(y))
    if method == "self":
        return 1.0 - student[rows, y]
    if method != "both":
        raise ThriftyError(f"Unknown audit method {method!r}: use one of {METHODS}.")
    if teacher is None:
        raise ThriftyError("The 'both' audit needs the teacher's distribution or confidence.")
    joint = np.clip(student, 1e-6, 1.0) * teacher
    post = joint / joint.sum(axis=1, keepdims=True)
    # tiny tie-break by the student alone (many teachers state the same confidence)
    return (1.0 - post[rows, y]) + 1e-6 * (1.0 - student[rows, y])


def audit_run(run_dir: Any, corpus: Any = None, method: str = "both", n_folds: int = 5, random_state: int = 0) -> list[dict[str, Any]]:
    """Rank the run's paid teacher labels (validation, seed, selected) by :func:`suspicion`, most suspect
    first. Each row carries empty ``correct_label`` and ``note`` columns for a reviewer to fill in."""
    from ..config import DistillConfig
    from ..students import load_model, make_student
    from .run import open_run

    view = open_run(run_dir, corpus=corpus)
    answers = [a for a in view.answers()
               if a.purpose in ("validation", "seed", "selected") and a.label is not None and a.text is not None]
    if not answers:
        raise ThriftyError(f"No teacher labels with texts to audit in {run_dir} (is its corpus where config.json says?).")
    model = load_model(view.run_dir)
    labels = list(view.task.labels)
    K = len(labels)
    X = model.features.transform([a.text for a in answers])
    y = np.asarray([labels.index(a.label) for a in answers])
    cfg = DistillConfig.from_dict(view.config)
    clf_name, params = cfg.classifier(), cfg.student_params
    p = out_of_fold_proba(X, y, lambda: make_student(clf_name, **params), K, n_folds, random_state)
    probs = np.asarray([a.probs if a.probs is not None and len(a.probs) == K else [np.nan] * K for a in answers], dtype=float)
    conf = np.asarray([np.nan if a.confidence is None else a.confidence for a in answers], dtype=float)
    score = suspicion(p, y, teacher_distribution(y, K, conf, probs), method=method)
    order = np.argsort(-score, kind="stable")
    gold = view.corpus.gold if view.corpus is not None else None
    out = []
    for rank, i in enumerate(order, 1):
        a = answers[i]
        row = {"rank": rank, "id": a.id, "text": a.text, "teacher_label": a.label,
               "teacher_confidence": None if a.confidence is None else round(float(a.confidence), 4),
               "student_label": labels[int(p[i].argmax())], "student_confidence": round(float(p[i].max()), 4),
               "suspicion": round(float(score[i]), 6), "purpose": a.purpose, "round": a.round,
               "human_label": a.human_label, "correct_label": "", "note": ""}
        if gold is not None and a.row is not None:
            row["gold"] = gold[a.row]
        out.append(row)
    return out


def import_labels(run_dir: Any, path: Any, reviewer: str = "human", corpus: Any = None) -> dict[str, int]:
    """Store a reviewer's labels from a CSV (``text`` or ``id``, and ``correct_label`` or ``label``) in the
    run's ledger under ``reviewer``. Rows with an empty label are skipped; the teacher's answers stay.
    From the next ``--resume`` on (and in ``predict --cascade``) they replace the teacher's answers."""
    import csv
    from pathlib import Path

    from .run import open_run

    view = open_run(run_dir, corpus=corpus)
    path = Path(path)
    if not path.exists():
        raise ThriftyError(f"No corrections file at {path}.")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cols = set(rows[0]) if rows else set()
    lab_col = next((c for c in ("correct_label", "label") if c in cols), None)
    if lab_col is None or not cols & {"text", "id"}:
        raise ThriftyError(f"{path} needs a 'correct_label' (or 'label') column and a 'text' or 'id' column; it has {sorted(cols)}.")
    by_id = dict(zip(view.corpus.ids.tolist(), view.corpus.texts)) if view.corpus is not None else {}
    labels = set(view.task.labels)
    pairs, skipped = [], 0
    for n, r in enumerate(rows, 2):
        lab = (r.get(lab_col) or "").strip()
        if not lab:
            skipped += 1
            continue
        if lab not in labels:
            raise ThriftyError(f"{path} line {n}: {lab!r} is not in the label set {sorted(labels)}; nothing was stored.")
        text = r.get("text") or None
        if text is None:
            if (r.get("id") or "") not in by_id:
                raise ThriftyError(f"{path} line {n}: id {r.get('id')!r} is not in the run's corpus; nothing was stored.")
            text = by_id[r["id"]]
        pairs.append((text, lab))
    with view.ledger() as led:
        led.add_human_labels(pairs, view.task, reviewer=reviewer, note=path.name)
    return {"stored": len(pairs), "skipped": skipped}
