"""Feature extractors: text -> vectors."""

from ..registry import Registry
from .base import FeatureExtractor
from .mpnet import MPNetFeatures
from .sentence import MiniLMFeatures, SentenceFeatures
from .static import StaticFeatures
from .text import TextFeatures
from .tfidf import TfidfFeatures

# Heavy extractors import their optional dependencies lazily, so all are always listed.
# Plug-ins: entry-point group thrifty.features (a FeatureExtractor class: fit/transform/save/load).
FEATURES: Registry[type] = Registry("features", "thrifty.features")
for _cls in (TfidfFeatures, MiniLMFeatures, StaticFeatures, TextFeatures, SentenceFeatures, MPNetFeatures):
    FEATURES.register(_cls.name, _cls)


def make_features(name: str, **kw) -> FeatureExtractor:
    """``tfidf``, ``minilm``, ``mpnet``, ``static``, ``text``, or ``st:/path/to/sentence-transformers-dir``."""
    from ..errors import ThriftyError

    base, sep, arg = name.partition(":")
    if base == "st":
        if not arg:
            raise ThriftyError("st features need a model directory: st:/path/to/sentence-transformers-model.")
        return SentenceFeatures(arg, **kw)
    if sep:
        raise ThriftyError(f"Unknown features {name!r}; choose from {FEATURES.names()} (st as st:/path).")
    return FEATURES.get(name)(**kw)


__all__ = [
    "FeatureExtractor", "TfidfFeatures", "MiniLMFeatures", "MPNetFeatures", "SentenceFeatures", "StaticFeatures", "TextFeatures",
    "FEATURES", "make_features",
]
