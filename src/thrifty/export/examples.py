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


def run(texts, outputs=("probabilities",)):
    """The graph's OUTPUTS for every text, one array each. One text per call: the int8 encoder's
    quantisation scale depends on the whole input, so batching would move the numbers."""
    rows = []
    for text in texts:
        ids = TOKENIZER.encode(text, add_special_tokens=CONFIG["add_special_tokens"]).ids
        ids = np.asarray([ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        rows.append(SESSION.run(list(outputs), feed))
    return [np.concatenate([r[j] for r in rows]) if rows else np.zeros((0, 0), np.float32) for j in range(len(outputs))]


def predict_proba(texts):
    """One row of label probabilities per text."""
    return run(texts)[0].astype(np.float32).reshape(len(texts), len(LABELS))


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

POOL = '''"""Classify texts with this exported thrifty label job's final student, a log-linear pool of the
students in member_*/ (each an export of its own, whose example.py runs it alone) and, when
export.json names them, the labels of the nearest training documents. No thrifty.

    python example.py "first text" "second text"
"""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONFIG = json.loads((HERE / "export.json").read_text())
LABELS = json.loads((HERE / "labels.json").read_text())
KNN = CONFIG["nearest_neighbours"]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"pool_{name}", HERE / name / "example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MEMBERS = [_load(m["dir"]) for m in CONFIG["members"]]
if KNN:
    REF = np.load(HERE / KNN["reference"], allow_pickle=False)
    REF_LABELS = np.load(HERE / KNN["reference_labels"], allow_pickle=False)


def knn_shares(Z):
    """Label shares among the k nearest training documents (cosine) of each row of Z."""
    Z = (Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    k = min(KNN["k"], len(REF))
    nn = np.argpartition(-(Z @ REF.T), k - 1, axis=1)[:, :k]
    out = np.zeros((len(Z), len(LABELS)))
    np.add.at(out, (np.repeat(np.arange(len(Z)), k), REF_LABELS[nn].ravel()), 1.0 / k)
    return out


def predict_proba(texts):
    """One row of label probabilities per text: softmax(sum_i weight_i log clip(P_i))."""
    texts = list(texts)
    S = np.zeros((len(texts), len(LABELS)))
    if not texts:
        return S

    def add(weight, P):
        S[:] += weight * np.log(np.clip(np.asarray(P, dtype=np.float64), CONFIG["clip"], 1.0))

    for i, (m, member) in enumerate(zip(CONFIG["members"], MEMBERS)):
        if i == 0 and KNN:
            P, Z = member.run(texts, ("probabilities", "features"))
            add(KNN["weight"], knn_shares(Z))
        else:
            P = member.predict_proba(texts)
        add(m["weight"], P)
    E = np.exp(S - S.max(1, keepdims=True))
    return E / E.sum(1, keepdims=True)


if __name__ == "__main__":
    for text, p in zip(sys.argv[1:], predict_proba(sys.argv[1:])):
        print(f"{LABELS[int(p.argmax())]}\\t{p.max():.3f}\\t{text}")
'''
