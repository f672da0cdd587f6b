"""A static student as a model2vec folder (``StaticModel.from_pretrained(DIR)``) plus its head.

thrifty's static features are a SIF-weighted token table; a text is the L2-normalised sum of
its tokens' rows. model2vec's ``StaticModel`` with ``normalize=True`` computes the
normalised mean of the same rows, which is the same vector, with two documented
differences: it drops ``[UNK]`` tokens and truncates texts to ``max_length`` tokens (512 by
default). ``head.onnx`` maps the embedding to label probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ThriftyError

EXAMPLE = '''"""Classify texts with this exported thrifty student: model2vec + onnxruntime, no thrifty.

    python example.py "first text" "second text"
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from model2vec import StaticModel

HERE = Path(__file__).resolve().parent
LABELS = json.loads((HERE / "labels.json").read_text())
ENCODER = StaticModel.from_pretrained(str(HERE))
HEAD = ort.InferenceSession(str(HERE / "head.onnx"), providers=["CPUExecutionProvider"])


def predict_proba(texts):
    """One row of label probabilities per text."""
    X = np.asarray(ENCODER.encode(list(texts)), dtype=np.float32)
    return HEAD.run(["probabilities"], {"features": X})[0]


if __name__ == "__main__":
    for text, p in zip(sys.argv[1:], predict_proba(sys.argv[1:])):
        print(f"{LABELS[int(p.argmax())]}\\t{p.max():.3f}\\t{text}")
'''


def write_model2vec(model: Any, d: Path):
    """model2vec files (``model.safetensors``, ``tokenizer.json``, ``config.json``) + ``head.onnx`` into ``d``."""
    import onnx

    from . import ExportResult
    from .graph import head_graph

    if getattr(model.features, "name", "") != "static":
        raise ThriftyError(f"--format model2vec needs a static-embedding student (e.g. static-lr); "
                           f"this one uses {getattr(model.features, 'name', '?')!r} features. Use --format onnx.")
    try:
        from model2vec import StaticModel
    except ImportError:
        raise ThriftyError("--format model2vec needs the model2vec package: pip install 'thrifty[export]'.") from None
    feats = model.features
    table = np.asarray(feats.table_, dtype=np.float32)
    StaticModel(vectors=table, tokenizer=feats.tokenizer_, normalize=True).save_pretrained(str(d))
    onnx.save(head_graph(model.student, table.shape[1], len(model.labels)), str(d / "head.onnx"))
    (d / "labels.json").write_text(json.dumps(list(model.labels), ensure_ascii=False, indent=1), encoding="utf-8")
    note = ("model2vec drops [UNK] tokens and truncates texts to 512 tokens; thrifty keeps both, so texts "
            "with unknown characters or over 512 tokens may score slightly differently.")
    cfg = {"format": "model2vec", "student": model.name, "features": "static", "head": "head.onnx",
           "head_inputs": ["features"], "labels": "labels.json", "portable": "full", "note": note}
    (d / "export.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    (d / "example.py").write_text(EXAMPLE, encoding="utf-8")
    return ExportResult(out=d, format="model2vec", note=note)
