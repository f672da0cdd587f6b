"""A disk cache of text embeddings, keyed by extractor identity and text sha256.

Layout: ``<root>/<identity>/<chunk>.npy`` (float32 rows, read memory-mapped) and
``<chunk>.keys.npy`` (the rows' sha256 digests as uint8[32]; written last, so a chunk without
keys is an interrupted write and is ignored). New texts are embedded and appended in chunks,
so a killed embedding run keeps what it finished. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..fileio import atomic_save_npy
from ..paths import cache_root

Encoder = Callable[[list[str]], np.ndarray]


def text_digests(texts: Sequence[str]) -> list[bytes]:
    return [hashlib.sha256(t.encode("utf-8")).digest() for t in texts]


class EmbeddingCache:
    """Embeddings of one extractor (``identity`` must change whenever its outputs would)."""

    def __init__(self, identity: str, root: str | Path | None = None, chunk_size: int = 4096):
        self.directory = Path(root or cache_root()) / "embeddings" / identity
        self.chunk_size = chunk_size

    def _index(self) -> dict[bytes, tuple[Path, int]]:
        index: dict[bytes, tuple[Path, int]] = {}
        if not self.directory.exists():
            return index
        for kf in sorted(self.directory.glob("*.keys.npy")):
            vf = kf.with_name(kf.name[: -len(".keys.npy")] + ".npy")
            keys = np.load(kf, allow_pickle=False)
            for r, k in enumerate(keys):
                index.setdefault(k.tobytes(), (vf, r))
        return index

    def _write(self, keys: list[bytes], vectors: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = self.directory / uuid.uuid4().hex
        for path, arr in ((Path(f"{stem}.npy"), vectors), (Path(f"{stem}.keys.npy"), np.frombuffer(b"".join(keys), np.uint8).reshape(-1, 32))):
            atomic_save_npy(path, arr)

    def embed(self, texts: Sequence[str], encode: Encoder, dim: int) -> np.ndarray:
        """Rows for ``texts``: cached ones read from disk, the rest encoded and stored."""
        texts = list(texts)
        keys = text_digests(texts)
        index = self._index()
        todo: dict[bytes, str] = {}
        for k, t in zip(keys, texts):
            if k not in index and k not in todo:
                todo[k] = t
        pending = list(todo.items())
        for s in range(0, len(pending), self.chunk_size):
            part = pending[s : s + self.chunk_size]
            vecs = np.ascontiguousarray(encode([t for _, t in part]), dtype=np.float32)
            self._write([k for k, _ in part], vecs)
        if pending:
            index = self._index()
        by_chunk: dict[Path, tuple[list[int], list[int]]] = {}
        for pos, k in enumerate(keys):
            vf, r = index[k]
            by_chunk.setdefault(vf, ([], []))[0].append(pos)
            by_chunk[vf][1].append(r)
        out = np.empty((len(texts), dim), dtype=np.float32)
        for vf, (pos, rows) in by_chunk.items():
            out[pos] = np.load(vf, mmap_mode="r", allow_pickle=False)[rows]
        return out
