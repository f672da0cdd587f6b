"""Static (model2vec-style) token embeddings distilled from the MiniLM ONNX encoder.

Distillation, once per encoder (cached under the user cache): every vocabulary token is run
through the encoder on its own (``[CLS] token [SEP]``, mean-pooled), and the vectors are reduced
with PCA to ``dim`` dimensions. ``fit`` on the unlabelled pool sets SIF weights
``a / (a + p(token))`` from the pool's token frequencies (rare tokens weigh more, tokens the
pool never uses weigh 1). A text is the weighted mean of its tokens' vectors, L2-normalised:
one tokenizer pass and one sparse matrix product, no neural network at prediction time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import ThriftyError
from ..fileio import atomic_save_npy
from .cache import cache_root
from .onnx_encoder import OnnxEncoder
from .sentence import MiniLMFeatures


def distil_token_vectors(encoder: OnnxEncoder, dim: int = 256) -> np.ndarray:
    """(vocab_size, dim) float32 token vectors: each token encoded alone, then PCA."""
    from sklearn.decomposition import PCA

    vocab = encoder.tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    cls_id, sep_id = vocab.get("[CLS]"), vocab.get("[SEP]")
    if cls_id is None or sep_id is None:
        raise ThriftyError("Static distillation expects a BERT-style tokenizer with [CLS] and [SEP].")
    # built once and stored, so batches (fixed order, fixed size) are fine and much faster here
    vectors = encoder.encode_ids([[cls_id, i, sep_id] for i in range(size)], batch_size=64)
    k = min(dim, vectors.shape[1])
    return PCA(n_components=k, random_state=0).fit_transform(vectors).astype(np.float32)


class StaticFeatures:
    """SIF-weighted mean of distilled MiniLM token vectors (dense float32, ``dim`` columns)."""

    name = "static"

    def __init__(self, dim: int = 256, sif: float = 1e-3):
        self.dim = dim
        self.sif = sif

    def _base(self) -> tuple[np.ndarray, object]:
        mini = MiniLMFeatures(cache=False)
        enc = mini.encoder
        path = cache_root() / "static" / f"{enc.identity()}-pca{self.dim}.npy"
        if not path.exists():
            vectors = distil_token_vectors(enc, self.dim)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_save_npy(path, vectors)
        return np.load(path, allow_pickle=False), enc.tokenizer

    def _counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        encs = self.tokenizer_.encode_batch([t if isinstance(t, str) else "" for t in texts], add_special_tokens=False)
        indptr = np.cumsum([0] + [len(e.ids) for e in encs])
        ids = np.fromiter((i for e in encs for i in e.ids), dtype=np.int64, count=int(indptr[-1]))
        data = np.ones(len(ids), dtype=np.float32)
        return sp.csr_matrix((data, ids, indptr), shape=(len(encs), self.vectors_.shape[0]))

    def fit(self, texts: Sequence[str]) -> "StaticFeatures":
        vectors, tok = self._base()
        tok.no_truncation()
        self.tokenizer_ = tok
        self.vectors_ = vectors
        counts = np.asarray(self._counts(texts).sum(axis=0)).ravel()
        p = counts / max(counts.sum(), 1.0)
        self.weights_ = (self.sif / (self.sif + p)).astype(np.float32)
        self.table_ = vectors * self.weights_[:, None]
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        C = self._counts(texts)
        X = np.asarray(C @ self.table_, dtype=np.float32)
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.maximum(norms, 1e-12)

    def describe(self) -> dict:
        return {"features": self.name, "distilled_from": "minilm", "dim": int(self.table_.shape[1]), "sif": self.sif}

    # ---- persistence: the weighted token table (.npy) + tokenizer.json -----------------------
    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "table.npy", self.table_, allow_pickle=False)
        (d / "tokenizer.json").write_text(self.tokenizer_.to_str(), encoding="utf-8")
        (d / "static.json").write_text(json.dumps({"dim": self.dim, "sif": self.sif}))

    @classmethod
    def load(cls, directory: str | Path) -> "StaticFeatures":
        from tokenizers import Tokenizer

        d = Path(directory)
        self = cls(**json.loads((d / "static.json").read_text()))
        self.table_ = np.load(d / "table.npy", allow_pickle=False)
        self.vectors_ = self.table_
        self.tokenizer_ = Tokenizer.from_file(str(d / "tokenizer.json"))
        return self
