"""The feature-extractor protocol: texts -> a matrix (dense numpy or scipy sparse)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable


@runtime_checkable
class FeatureExtractor(Protocol):
    """Turns texts into vectors. ``fit`` may learn a vocabulary from unlabelled texts."""

    name: str

    def fit(self, texts: Sequence[str]) -> "FeatureExtractor": ...

    def transform(self, texts: Sequence[str]) -> Any: ...

    def save(self, directory: str | Path) -> None:
        """Write the fitted state in a safe format (JSON / .npy / ONNX; never pickle)."""
        ...

    @classmethod
    def load(cls, directory: str | Path) -> "FeatureExtractor": ...
