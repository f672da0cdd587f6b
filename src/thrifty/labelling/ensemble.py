"""A stronger student from the same training labels: a log-linear pool of the installed students.

``P = softmax(sum_i a_i log P_i)`` over the job's student (e.g. mpnet-lr), the other installed
students (minilm-lr, tfidf-lr) and the label shares of the 10 nearest training documents in the
student's embedding space, with one weight ``a_i >= 0`` per member fitted by the log-loss of
5-fold out-of-fold predictions of the *training* labels (never the validation or audit rows: the
Learn-then-Test guarantee needs the score fixed before the validation rows are read).

Measured in ``benchmarks/explore/label_scores.py`` (10 seeds, random labels, the same guarantee):
at 0.95 the escalation rate for new documents fell on 5 of 6 real-teacher sets (median 39.7% ->
35.5% with 1,000 labels, 36.7% -> 30.5% with 2,000; gwsd_gpt4o +2.0 +- 1.3 points), where an
equal-weight mean was worse on mr_chatgpt and a free multinomial stack overfitted banking77's 77
classes. With the job's own (M-RARU) labels: ``benchmarks/end_to_end.py --ensemble``, docs/label.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.sparse import issparse

FOLDS = 5
NEIGHBOURS = 10
CLIP = 1e-6


def ensemble_members(student: str) -> list[str]:
    """The job's student first, then each other installed student with different features (minilm-lr with
    the ``embed`` extra, tfidf-lr always); a single member means no ensemble."""
    from ..config import split_student
    from ..students import TEXT_STUDENTS, minilm_installed

    members = [student]
    feats, _, clf, _ = split_student(student)
    if clf in TEXT_STUDENTS:  # a fine-tuned transformer reads texts, not vectors: nothing to pool it with here
        return members
    have = {feats}
    if minilm_installed() and "minilm" not in have:
        members.append("minilm-lr")
    if "tfidf" not in have:
        members.append("tfidf-lr")
    return members


def _unit(X: Any) -> np.ndarray:
    Z = np.asarray(X, dtype=np.float32)
    return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)


def knn_shares(Z: np.ndarray, ref: np.ndarray, y_ref: np.ndarray, n_labels: int, k: int = NEIGHBOURS,
               chunk: int = 4096) -> np.ndarray:
    """Label shares among the ``k`` nearest reference rows (cosine; unit-norm ``Z``/``ref``) of each row of ``Z``."""
    k = min(k, len(ref))
    out = np.zeros((len(Z), n_labels))
    for s in range(0, len(Z), chunk):
        S = Z[s : s + chunk] @ ref.T
        nn = np.argpartition(-S, k - 1, axis=1)[:, :k]
        rows = np.repeat(np.arange(len(S)), k)
        np.add.at(out[s : s + chunk], (rows, y_ref[nn].ravel()), 1.0 / k)
    return out


def pool_weights(probas: Sequence[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Weights ``a_i >= 0`` minimising the log-loss of ``softmax(sum_i a_i log P_i)`` on labels ``y``."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    L = np.stack([np.log(np.clip(P, CLIP, 1.0)) for P in probas])

    def nll(a: np.ndarray) -> float:
        return float(-np.mean(log_softmax(np.tensordot(np.exp(a), L, 1), axis=1)[np.arange(len(y)), y]))

    return np.exp(minimize(nll, np.zeros(len(probas)), method="Nelder-Mead", options={"maxiter": 400}).x)


def combine(weights: np.ndarray, probas: Sequence[np.ndarray]) -> np.ndarray:
    from scipy.special import softmax

    return softmax(np.tensordot(weights, np.stack([np.log(np.clip(P, CLIP, 1.0)) for P in probas]), 1), axis=1)


class Ensemble:
    """The log-linear pool of ``members`` (student specs, the first one's features also give the kNN shares).

    ``fit(texts, train, y, first=(features, X))`` fits every member's features on ``texts`` (no labels; only on
    the rows ``vocabulary`` when given),
    the weights on out-of-fold predictions of rows ``train`` (labels ``y``), then every member on all of
    them, and sets ``proba_`` (probabilities of every row of ``texts``). ``first`` passes the job's
    already fitted features of the first member and their matrix, which are then not recomputed.
    """

    def __init__(self, members: Sequence[str], n_labels: int, *, seed: int = 0, neighbours: int = NEIGHBOURS):
        self.members, self.n_labels, self.seed, self.neighbours = list(members), int(n_labels), int(seed), int(neighbours)

    def fit(self, texts: Sequence[str], train: np.ndarray, y: np.ndarray, first: tuple[Any, Any] | None = None,
            vocabulary: np.ndarray | None = None) -> "Ensemble":
        from sklearn.model_selection import KFold

        from ..config import split_student
        from ..features import make_features
        from ..students import full_proba, make_student

        t0 = time.perf_counter()
        texts = list(texts)
        folds = list(KFold(min(FOLDS, len(train)), shuffle=True, random_state=self.seed).split(train))
        self.features_, self.students_ = [], []
        oof, full = [], []
        for i, spec in enumerate(self.members):
            feats, fparams, clf, cparams = split_student(spec)
            if i == 0 and first is not None:
                f, X = first
            else:
                f = make_features(feats, **fparams).fit(texts if vocabulary is None else [texts[j] for j in vocabulary])
                X = f.transform(texts)
            o = np.zeros((len(train), self.n_labels))
            for a, b in folds:
                o[b] = full_proba(make_student(clf, **cparams).fit(X[train[a]], y[a]), X[train[b]], self.n_labels)
            s = make_student(clf, **cparams).fit(X[train], y)
            self.features_.append(f)
            self.students_.append(s)
            oof.append(o)
            full.append(full_proba(s, X, self.n_labels))
            if i == 0:
                Z = _unit(X) if self.neighbours and not issparse(X) else None  # kNN in a dense embedding space only
        self.y_ref_ = np.asarray(y, dtype=np.int64)
        if Z is not None:
            self.ref_ = Z[train]
            ko = np.zeros((len(train), self.n_labels))
            for a, b in folds:  # a training row's neighbours come from the other folds only
                ko[b] = knn_shares(Z[train[b]], Z[train[a]], self.y_ref_[a], self.n_labels, self.neighbours)
            oof.append(ko)
            full.append(knn_shares(Z, self.ref_, self.y_ref_, self.n_labels, self.neighbours))
        else:
            self.neighbours, self.ref_ = 0, np.zeros((0, 1), dtype=np.float32)
        self.weights_ = pool_weights(oof, self.y_ref_)
        self.parts_ = full  # each member's (then the kNN's) probabilities of every row: what with_member pools
        self.proba_ = combine(self.weights_, full)
        self.fit_s_ = time.perf_counter() - t0
        return self

    @classmethod
    def single(cls, spec: str, features: Any, student: Any, proba: np.ndarray, n_labels: int) -> "Ensemble":
        """A fitted student (its ``proba`` of every row) as a one-member pool, for :meth:`with_member`."""
        one = cls([spec], n_labels, neighbours=0)
        one.features_, one.students_, one.weights_, one.parts_ = [features], [student], np.ones(1), [proba]
        one.ref_, one.y_ref_, one.fit_s_ = np.zeros((0, 1), dtype=np.float32), np.zeros(0, dtype=np.int64), 0.0
        one.proba_ = combine(one.weights_, one.parts_)
        return one

    def with_member(self, spec: str, features: Any, student: Any, proba: np.ndarray, share: float = 0.5) -> "Ensemble":
        """This pool and one more fitted member (``proba``: its probabilities of every row), a fixed ``share`` of the
        weight: ``softmax((1 - share) log P_pool + share log P_member)``, the geometric mean at 0.5. Fixed, not
        fitted: the new member (the fine-tuned transformer) has no out-of-fold predictions to fit a weight on."""
        k = len(self.members)
        out = type(self)([*self.members, spec], self.n_labels, seed=self.seed, neighbours=self.neighbours)
        out.features_, out.students_ = [*self.features_, features], [*self.students_, student]
        out.ref_, out.y_ref_, out.fit_s_ = self.ref_, self.y_ref_, self.fit_s_
        w = (1 - share) * np.asarray(self.weights_, dtype=float)
        out.weights_ = np.concatenate([w[:k], [share], w[k:]])
        out.parts_ = [*self.parts_[:k], proba, *self.parts_[k:]]
        out.proba_ = combine(out.weights_, out.parts_)
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        from ..students import full_proba

        texts = list(texts)
        probas = []
        for i, (f, s) in enumerate(zip(self.features_, self.students_)):
            X = f.transform(texts)
            probas.append(full_proba(s, X, self.n_labels))
            if i == 0 and self.neighbours:
                knn = knn_shares(_unit(X), self.ref_, self.y_ref_, self.n_labels, self.neighbours)
        return combine(self.weights_, [*probas, knn] if self.neighbours else probas)

    @property
    def name(self) -> str:
        return "pool(" + " + ".join(self.members + ([f"knn{self.neighbours}"] if self.neighbours else [])) + ")"

    def describe(self) -> dict[str, Any]:
        return {"members": [*self.members, *([f"knn{self.neighbours}"] if self.neighbours else [])], "weights": [round(float(w), 4) for w in self.weights_],
                "training_rows": int(len(self.y_ref_)), "fit_s": round(self.fit_s_, 3)}

    def save(self, directory: str | Path, labels: Sequence[str]) -> Path:
        """``ensemble.json`` + one ``member_i/`` per student (``thrifty predict`` format) + the kNN reference rows (.npy)."""
        from ..fileio import atomic_save_npy, atomic_write
        from ..students import TextModel, save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for i, (spec, f, s) in enumerate(zip(self.members, self.features_, self.students_)):
            save_model(TextModel(f, s, labels, name=spec), d / f"member_{i}")
        atomic_save_npy(d / "knn_ref.npy", self.ref_)
        atomic_save_npy(d / "knn_labels.npy", self.y_ref_)
        atomic_write(d / "ensemble.json", json.dumps({"members": self.members, "weights": self.weights_.tolist(),
                                                       "neighbours": self.neighbours, "labels": list(labels)}, indent=2))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "Ensemble":
        """Load what :meth:`save` wrote (skops-checked members, ``np.load`` without pickle)."""
        from ..students import load_model

        d = Path(directory)
        meta = json.loads((d / "ensemble.json").read_text(encoding="utf-8"))
        ens = cls(meta["members"], len(meta["labels"]), neighbours=meta["neighbours"])
        ens.labels = tuple(meta["labels"])
        models = [load_model(d / f"member_{i}") for i in range(len(meta["members"]))]
        ens.features_, ens.students_ = [m.features for m in models], [m.student for m in models]
        ens.weights_ = np.asarray(meta["weights"], dtype=float)
        ens.ref_ = np.load(d / "knn_ref.npy", allow_pickle=False)
        ens.y_ref_ = np.load(d / "knn_labels.npy", allow_pickle=False)
        ens.fit_s_ = 0.0
        return ens


def is_ensemble(directory: str | Path) -> bool:
    return (Path(directory) / "ensemble.json").exists()
