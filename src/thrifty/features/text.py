"""Identity features: the texts themselves, for students that read raw text (fine-tuned transformers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np


class TextFeatures:
    """Returns an object array of strings (indexable like a matrix: ``X[idx]``, ``X.shape[0]``)."""

    name = "text"

    def fit(self, texts: Sequence[str]) -> "TextFeatures":
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty(len(texts), dtype=object)
        out[:] = [t if isinstance(t, str) else "" for t in texts]
        return out

    def describe(self) -> dict:
        return {"features": self.name}

    def save(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "text.json").write_text(json.dumps({"name": self.name}))

    @classmethod
    def load(cls, directory: str | Path) -> "TextFeatures":
        return cls()
