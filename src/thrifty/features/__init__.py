"""Feature extractors: text -> vectors."""

from .base import FeatureExtractor
from .tfidf import TfidfFeatures

FEATURES: dict[str, type] = {"tfidf": TfidfFeatures}


def make_features(name: str, **kw) -> FeatureExtractor:
    from ..errors import ThriftyError

    if name not in FEATURES:
        raise ThriftyError(f"Unknown features {name!r}; choose from {sorted(FEATURES)}.")
    return FEATURES[name](**kw)


__all__ = ["FeatureExtractor", "TfidfFeatures", "FEATURES", "make_features"]
