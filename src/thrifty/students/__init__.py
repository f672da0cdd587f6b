"""Students: classifiers trained on teacher labels, behind one protocol."""

from __future__ import annotations

from ..errors import ThriftyError
from ..features import make_features
from .base import Student, TextModel, full_proba
from .linear import LogisticStudent
from .persist import load_model, save_model

STUDENTS: dict[str, type] = {"lr": LogisticStudent}
DEFAULT_STUDENT = "tfidf-lr"


def make_student(name: str, **kw) -> Student:
    if name not in STUDENTS:
        raise ThriftyError(f"Unknown student {name!r}; choose from {sorted(STUDENTS)}.")
    return STUDENTS[name](**kw)


def parse_model_name(name: str) -> tuple[str, str]:
    """'tfidf-lr' -> ('tfidf', 'lr'). The part before the first '-' names the features."""
    if "-" not in name:
        raise ThriftyError(f"Student names look like FEATURES-CLASSIFIER (e.g. {DEFAULT_STUDENT!r}); got {name!r}.")
    feats, clf = name.split("-", 1)
    return feats, clf


__all__ = [
    "Student", "TextModel", "full_proba", "LogisticStudent", "STUDENTS", "DEFAULT_STUDENT",
    "make_student", "make_features", "parse_model_name", "save_model", "load_model",
]
