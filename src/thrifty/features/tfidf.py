"""TF-IDF over word uni/bi-grams and character 2-5-grams (within word boundaries)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer


class TfidfFeatures:
    """Word (1-2) + char_wb (2-5) TF-IDF, sublinear tf; fitted on the unlabelled pool."""

    name = "tfidf"

    def __init__(self, max_features: int = 100_000, min_df: int = 2, char: bool = True):
        self.max_features = max_features
        self.min_df = min_df
        self.char = char

    def _vectorizers(self) -> list[TfidfVectorizer]:
        vs = [
            TfidfVectorizer(
                ngram_range=(1, 2), min_df=self.min_df, max_features=self.max_features, sublinear_tf=True, dtype=np.float32
            )
        ]
        if self.char:
            vs.append(
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 5), min_df=self.min_df, max_features=self.max_features,
                    sublinear_tf=True, dtype=np.float32,
                )
            )
        return vs

    def fit(self, texts: Sequence[str]) -> "TfidfFeatures":
        texts = list(texts)
        min_df = self.min_df if len(texts) >= 50 else 1
        self.vectorizers_ = []
        for v in self._vectorizers():
            v.set_params(min_df=min_df)
            try:
                v.fit(texts)
            except ValueError:  # e.g. empty vocabulary on tiny corpora
                v.set_params(min_df=1)
                v.fit([t if t.strip() else "_" for t in texts] or ["_"])
            self.vectorizers_.append(v)
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        texts = list(texts)
        if not texts:
            return sp.csr_matrix((0, sum(len(v.vocabulary_) for v in self.vectorizers_)), dtype=np.float32)
        mats = [v.transform(texts) for v in self.vectorizers_]
        X = sp.hstack(mats, format="csr") if len(mats) > 1 else mats[0].tocsr()
        if len(mats) > 1:  # keep rows unit-norm after stacking two normalised blocks
            X = X.multiply(1 / (len(mats) ** 0.5)).tocsr()
        return X

    # ---- persistence: JSON + .npy, no pickle ----------------------------------------------
    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"max_features": self.max_features, "min_df": self.min_df, "char": self.char, "vectorizers": []}
        for j, v in enumerate(self.vectorizers_):
            params = {k: val for k, val in v.get_params().items() if k not in _SKIP_PARAMS}
            vocab = sorted(v.vocabulary_, key=v.vocabulary_.get)
            (d / f"vocab{j}.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
            np.save(d / f"idf{j}.npy", np.asarray(v.idf_, dtype=np.float64), allow_pickle=False)
            meta["vectorizers"].append(params)
        (d / "tfidf.json").write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "TfidfFeatures":
        d = Path(directory)
        meta = json.loads((d / "tfidf.json").read_text(encoding="utf-8"))
        self = cls(max_features=meta["max_features"], min_df=meta["min_df"], char=meta["char"])
        self.vectorizers_ = []
        for j, params in enumerate(meta["vectorizers"]):
            params["ngram_range"] = tuple(params["ngram_range"])
            v = TfidfVectorizer(**params, dtype=np.float32)
            vocab = json.loads((d / f"vocab{j}.json").read_text(encoding="utf-8"))
            v.vocabulary_ = {t: i for i, t in enumerate(vocab)}
            v.idf_ = np.load(d / f"idf{j}.npy", allow_pickle=False)
            self.vectorizers_.append(v)
        return self


_SKIP_PARAMS = {"dtype", "tokenizer", "preprocessor", "vocabulary", "analyzer_callable"}
