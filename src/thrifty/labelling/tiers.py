"""The student tiers of ``thrifty label``: a fast student in front of the accurate one.

On a large corpus the accurate student (all-mpnet-base-v2 + logistic regression, ~90 docs/s on
2 cores) is the slow part of a label job: ~3 h per 10^6 documents. The job therefore trains on
a uniform *selection pool* (``LabelConfig.pool_size``), and every document outside it goes
through a cascade::

    fast student (TF-IDF + LR, thousands of docs/s) -> accurate student -> teacher

The fast tier is distilled on the accurate student's probabilities over the pool (a second,
free distillation: no teacher call) and answers a document itself when its confidence is at
least ``threshold_``. That threshold is chosen on out-of-fold predictions over the pool, without teacher
labels: the lowest at which the documents it keeps disagree with the accurate student on at most
``tolerance`` of them, by a 90% upper confidence bound (so a small pool, which cannot vouch for
the tier, keeps nothing). Only what it does not keep pays for the accurate features.

The teacher threshold is then chosen by Learn-then-Test for the *composite* (fast, then
accurate) on the validation rows (:func:`cascade_scores`), so the agreement guarantee covers
the fast tier's mistakes too: a fast-tier error is a kept document that disagrees with the
teacher, like any other.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

FAST_DEFAULT = "tfidf-lr"
FOLDS = 5  # the keep threshold is chosen on out-of-fold predictions over the whole pool
MIN_FAST_POOL = 100  # a smaller pool could not vouch for a fast tier anyway (0 of 100 bounds at 2.3%)
SOFT_FLOOR = 0.01  # accurate-student probabilities below this are dropped from the fast tier's soft targets


def resolve_fast(spec: str | None, accurate: str) -> str | None:
    """The fast student to use in front of ``accurate``: ``None``/``"none"`` for none; ``"auto"`` is
    :data:`FAST_DEFAULT` unless the accurate student already uses the same features."""
    if spec in (None, "none", ""):
        return None
    if spec == "auto":
        from ..config import split_student

        return None if split_student(accurate)[0] == split_student(FAST_DEFAULT)[0] else FAST_DEFAULT
    return spec


def keep_threshold(confidence: np.ndarray, agree: np.ndarray, tolerance: float, level: float = 0.9) -> float:
    """The lowest confidence threshold at which the kept documents (confidence >= it) disagree with
    the reference on at most ``tolerance`` of them, by a one-sided Clopper-Pearson upper bound at
    ``level`` (a few held-out documents cannot vouch for a tier); ``inf`` (keep nothing) when none qualifies."""
    from scipy.stats import beta

    order = np.argsort(-confidence, kind="stable")
    c = confidence[order]
    kept = np.arange(1, len(c) + 1)
    errors = np.cumsum(~agree[order])
    upper = np.where(errors >= kept, 1.0, beta.ppf(level, errors + 1, np.maximum(kept - errors, 1)))
    ok = np.flatnonzero((upper <= tolerance) & np.r_[c[1:] < c[:-1], True])  # cut only between distinct values
    if len(ok) == 0:
        return float("inf")
    k = int(ok.max())
    return float(c[k]) if k == len(c) - 1 else float((c[k] + c[k + 1]) / 2)


class FastTier:
    """A cheap student (``spec``, e.g. ``tfidf-lr``) distilled on the accurate student's probabilities.

    ``fit(texts, accurate_proba)`` sets ``threshold_`` with :func:`keep_threshold` on 5-fold
    out-of-fold predictions over the pool (every pool document held out once: a tighter bound than
    a held-out slice), then trains on the whole pool.
    """

    def __init__(self, spec: str = FAST_DEFAULT, *, tolerance: float = 0.01, seed: int = 0):
        self.spec, self.tolerance, self.seed = spec, float(tolerance), int(seed)

    def fit(self, texts: Sequence[str], accurate_proba: np.ndarray) -> "FastTier":
        from sklearn.model_selection import KFold

        from ..config import split_student
        from ..features import make_features
        from ..students import full_proba

        t0 = time.perf_counter()
        n, k = accurate_proba.shape
        self.n_labels_ = k
        feats, fparams, _, _ = split_student(self.spec)
        self.features_ = make_features(feats, **fparams).fit(list(texts))  # no labels: the whole pool's vocabulary
        X = self.features_.transform(list(texts))
        soft = self._targets(accurate_proba)
        oof = np.zeros((n, k))
        for tr, te in KFold(FOLDS, shuffle=True, random_state=self.seed).split(np.arange(n)):
            oof[te] = full_proba(self._student().fit(X[tr], soft[tr]), X[te], k)
        agree = oof.argmax(1) == accurate_proba.argmax(1)
        self.threshold_ = keep_threshold(oof.max(1), agree, self.tolerance)
        kept = oof.max(1) >= self.threshold_
        self.held_out_ = {"docs": int(n), "folds": FOLDS, "kept_share": float(kept.mean()),
                          "agreement_with_accurate_kept": float(agree[kept].mean()) if kept.any() else None,
                          "agreement_with_accurate_all": float(agree.mean())}
        self.student_ = self._student().fit(X, soft)
        self.fit_s_ = time.perf_counter() - t0
        return self

    def _student(self) -> Any:
        from ..config import split_student
        from ..students import make_student

        _, _, clf, cparams = split_student(self.spec)
        return make_student(clf, **cparams)

    @staticmethod
    def _targets(accurate_proba: np.ndarray) -> np.ndarray:
        """The accurate student's distributions, minus what is below :data:`SOFT_FLOOR` (fewer expanded rows)."""
        soft = np.where(accurate_proba >= SOFT_FLOOR, accurate_proba, 0.0)
        soft[np.arange(len(soft)), accurate_proba.argmax(1)] += 1e-12  # never an all-zero row
        return soft / soft.sum(1, keepdims=True)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        from ..students import full_proba

        return full_proba(self.student_, self.features_.transform(list(texts)), self.n_labels_)

    def model(self, labels: Sequence[str]) -> Any:
        """The fast tier as a :class:`~thrifty.students.TextModel` (what ``thrifty predict`` loads)."""
        from ..students import TextModel

        return TextModel(self.features_, self.student_, labels, name=self.spec)


def cascade_scores(
    fast_proba: np.ndarray | None, fast_threshold: float, accurate_proba: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(label, score, kept_by_fast)`` of the composite student for each document.

    A document the fast tier keeps (confidence >= ``fast_threshold``) gets its label and the score
    ``1 + confidence / 2`` in (1, 1.5], above every accurate-tier score and below the "escalate
    everything" threshold (2), so that escalating by ``score < t`` stays one monotone family
    (Learn-then-Test needs it). ``accurate_proba`` holds a row for every
    document, or only for those the fast tier does not keep (in order).
    """
    n = len(fast_proba) if fast_proba is not None else len(accurate_proba)
    kept = np.zeros(n, dtype=bool) if fast_proba is None else fast_proba.max(1) >= fast_threshold
    acc = accurate_proba[~kept] if len(accurate_proba) == n else accurate_proba
    label, score = np.zeros(n, dtype=int), np.zeros(n)
    label[~kept], score[~kept] = acc.argmax(1), acc.max(1)
    if kept.any():
        assert fast_proba is not None
        label[kept], score[kept] = fast_proba[kept].argmax(1), 1.0 + fast_proba[kept].max(1) / 2
    return label, score, kept


def score_chunk(
    texts: list[str], fast: Callable[[list[str]], np.ndarray] | None, fast_threshold: float,
    accurate: Callable[[list[str]], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """One chunk through fast -> accurate: ``(label, score, kept_by_fast, fast_s, accurate_s)``.

    ``fast``/``accurate`` return probabilities for a list of texts; ``accurate`` only sees what the
    fast tier does not keep. Shared by the local stream and the Ray engine's actors."""
    t0 = time.perf_counter()
    fp = fast(texts) if fast is not None else None
    t1 = time.perf_counter()
    todo = np.ones(len(texts), dtype=bool) if fp is None else fp.max(1) < fast_threshold
    ap = accurate([t for t, d in zip(texts, todo) if d]) if todo.any() else np.zeros((0, 1))
    label, score, kept = cascade_scores(fp, fast_threshold, ap)
    return label, score, kept, t1 - t0, time.perf_counter() - t1


def stream_tiers(
    texts: Sequence[str], idx: np.ndarray, fast: Callable[[list[str]], np.ndarray] | None, fast_threshold: float,
    accurate: Callable[[list[str]], np.ndarray], *, chunk: int = 8192, say: Callable[[str], None] | None = None,
    what: str = "documents outside the pool",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """Run documents ``idx`` through fast -> accurate in chunks on this machine; ``(label, score, kept_by_fast,
    seconds)``, ``seconds`` holding the time spent in each tier and the documents each read."""
    labels, scores, kept_all = [], [], []
    secs = {"fast_s": 0.0, "fast_docs": 0, "accurate_s": 0.0, "accurate_docs": 0}
    for start in range(0, len(idx), chunk):
        part = [texts[i] for i in idx[start : start + chunk]]
        lab, sc, kept, f_s, a_s = score_chunk(part, fast, fast_threshold, accurate)
        labels.append(lab), scores.append(sc), kept_all.append(kept)
        secs["fast_s"] += f_s
        secs["fast_docs"] += len(part) if fast is not None else 0
        secs["accurate_s"] += a_s
        secs["accurate_docs"] += int((~kept).sum())
        if say is not None:
            say(f"  classified {min(start + chunk, len(idx)):,} of {len(idx):,} {what} "
                f"({secs['accurate_docs']:,} needed the accurate student)")
    if not labels:
        return np.zeros(0, int), np.zeros(0), np.zeros(0, bool), secs
    return np.concatenate(labels), np.concatenate(scores), np.concatenate(kept_all), secs
