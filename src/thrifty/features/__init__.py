"""Feature extractors: text -> vectors."""

from .base import FeatureExtractor
from .mpnet import MPNetFeatures
from .sentence import MiniLMFeatures, SentenceFeatures
from .static import StaticFeatures
from .text import TextFeatures
from .tfidf import TfidfFeatures

# Heavy extractors import their optional dependencies lazily, so all are always listed.
FEATURES: dict[str, type] = {
    "tfidf": TfidfFeatures, "minilm": MiniLMFeatures, "static": StaticFeatures, "text": TextFeatures,
    "st": SentenceFeatures, "mpnet": MPNetFeatures,
}


def make_features(name: str, **kw) -> FeatureExtractor:
    """``tfidf``, ``minilm``, ``mpnet``, ``static``, ``text``, or ``st:/path/to/sentence-transformers-dir``."""
    from ..errors import ThriftyError

    base, sep, arg = name.partition(":")
    if base == "st":
        if not arg:
            raise ThriftyError("st features need a model directory: st:/path/to/sentence-transformers-model.")
        return SentenceFeatures(arg, **kw)
    if sep or name not in FEATURES:
        raise ThriftyError(f"Unknown features {name!r}; choose from {sorted(FEATURES)} (st as st:/path).")
    return FEATURES[name](**kw)


__all__ = [
    "FeatureExtractor", "TfidfFeatures", "MiniLMFeatures", "MPNetFeatures", "SentenceFeatures", "StaticFeatures", "TextFeatures",
    "FEATURES", "make_features",
]
