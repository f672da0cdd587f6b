"""The ``example.py`` written next to an exported model: it runs the export without thrifty."""

from __future__ import annotations

TOKENS = '''"""Classify texts with this exported thrifty student: onnxruntime + tokenizers + numpy only.

    python example.py "first text" "second text"
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
CONFIG = json.loads((HERE / "export.json").read_text())
LABELS = json.loads((HERE / "labels.json").read_text())
TOKENIZER = Tokenizer.from_file(str(HERE / "tokenizer.json"))
SESSION = ort.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])


def predict_proba(texts):
    """One row of label probabilities per text. One text per call: the int8 encoder's
    quantisation scale depends on the whole input, so batching would move the numbers."""
    rows = []
    for text in texts:
        ids = TOKENIZER.encode(text, add_special_tokens=CONFIG["add_special_tokens"]).ids
        ids = np.asarray([ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        rows.append(SESSION.run(["probabilities"], feed)[0][0])
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(LABELS))


if __name__ == "__main__":
    for text, p in zip(sys.argv[1:], predict_proba(sys.argv[1:])):
        print(f"{LABELS[int(p.argmax())]}\\t{p.max():.3f}\\t{text}")
'''

TFIDF = '''"""Classify texts with this exported thrifty student: scikit-learn computes the TF-IDF vector
(its char_wb analyser has no ONNX converter), onnxruntime runs the classifier head. No thrifty.

    python example.py "first text" "second text"
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

HERE = Path(__file__).resolve().parent
LABELS = json.loads((HERE / "labels.json").read_text())
META = json.loads((HERE / "tfidf" / "tfidf.json").read_text())
SESSION = ort.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
VECTORIZERS = []
for j, params in enumerate(META["vectorizers"]):
    v = TfidfVectorizer(**{**params, "ngram_range": tuple(params["ngram_range"])}, dtype=np.float32)
    v.vocabulary_ = {t: i for i, t in enumerate(json.loads((HERE / "tfidf" / f"vocab{j}.json").read_text()))}
    v.idf_ = np.load(HERE / "tfidf" / f"idf{j}.npy", allow_pickle=False)
    VECTORIZERS.append(v)


def predict_proba(texts):
    """One row of label probabilities per text (the two TF-IDF blocks scaled by 1/sqrt(2) when stacked)."""
    X = sp.hstack([v.transform(texts) for v in VECTORIZERS], format="csr") / np.sqrt(len(VECTORIZERS))
    return SESSION.run(["probabilities"], {"features": X.toarray().astype(np.float32)})[0]


if __name__ == "__main__":
    for text, p in zip(sys.argv[1:], predict_proba(sys.argv[1:])):
        print(f"{LABELS[int(p.argmax())]}\\t{p.max():.3f}\\t{text}")
'''
