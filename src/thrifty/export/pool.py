"""A label job's final student, the log-linear pool in ``OUT.thrifty/ensemble/``, as ONNX exports.

``P = softmax(sum_i a_i log clip(P_i, 1e-6, 1))`` over the members (each its own ONNX export in ``member_i/``: a
frozen student, the fine-tuned transformer) and, when the pool has one, the label shares of the ``k`` nearest
training documents in the first member's embedding space (``knn_ref.npy``, ``knn_labels.npy``; the first member's
graph then also outputs its ``features``). ``export.json`` holds the weights, ``example.py`` combines them with
onnxruntime, tokenizers and numpy (and scikit-learn for a TF-IDF member), without thrifty.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import ExportResult, write_onnx


def write_pool(directory: Path, d: Path) -> ExportResult:
    """Export the pool saved in ``directory`` (``Ensemble.save``) into ``d``."""
    from ..labelling.ensemble import CLIP, Ensemble
    from ..students import TextModel
    from .examples import POOL

    meta = json.loads((directory / "ensemble.json").read_text(encoding="utf-8"))
    ens = Ensemble.load(directory)
    labels = list(meta["labels"])
    n = len(ens.members)
    members, notes = [], []
    for i, spec in enumerate(ens.members):
        model = TextModel(ens.features_[i], ens.students_[i], labels, name=spec)
        (d / f"member_{i}").mkdir()
        sub = write_onnx(model, d / f"member_{i}", features_output=i == 0 and bool(ens.neighbours))
        members.append({"dir": f"member_{i}", "student": spec, "weight": float(ens.weights_[i]),
                        "portable": sub.portable})
        if sub.note:
            notes.append(f"member_{i} ({spec}): {sub.note}")
    knn = None
    if ens.neighbours:
        np.save(d / "knn_ref.npy", np.asarray(ens.ref_, dtype=np.float32), allow_pickle=False)
        np.save(d / "knn_labels.npy", np.asarray(ens.y_ref_, dtype=np.int64), allow_pickle=False)
        knn = {"k": int(ens.neighbours), "weight": float(ens.weights_[n]), "features_of": "member_0",
               "reference": "knn_ref.npy", "reference_labels": "knn_labels.npy"}
    portable = "full" if all(m["portable"] == "full" for m in members) else "head"
    res = ExportResult(out=d, format="onnx", portable=portable, note=" ".join(notes))
    cfg = {"format": "onnx-pool", "student": ens.name, "labels": "labels.json", "members": members,
           "nearest_neighbours": knn, "clip": CLIP, "portable": portable, "note": res.note,
           "combine": "softmax(sum_i weight_i * log(clip(P_i, clip, 1))) over the members, then the kNN shares"}
    (d / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=1), encoding="utf-8")
    (d / "export.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    (d / "example.py").write_text(POOL, encoding="utf-8")
    return res
