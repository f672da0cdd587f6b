"""Selection strategies: which unlabelled documents to pay the teacher for next."""

from __future__ import annotations

from functools import partial
from typing import Any

from ..errors import ThriftyError
from .auto import AutoStrategy
from .base import MEASURES, PoolState, StatefulStrategy, Strategy, WeightingStrategy, entropy, least_confidence, margin
from .coverage import CoverageStrategy
from .diversity import DiversityStrategy
from .llkd import LLKDStrategy
from .mraru import MRARUStrategy
from .uncertainty import RandomStrategy, UncertaintyStrategy


STRATEGIES: dict[str, Any] = {
    "random": RandomStrategy,
    "least_confidence": partial(UncertaintyStrategy, measure="least_confidence"),
    "margin": partial(UncertaintyStrategy, measure="margin"),
    "entropy": partial(UncertaintyStrategy, measure="entropy"),
    "mraru": MRARUStrategy,
    "diversity": DiversityStrategy,
    "llkd": LLKDStrategy,
    "coverage": CoverageStrategy,
    "auto": AutoStrategy,
}


# The strategy used when none is named (Distiller, DistillConfig, `thrifty distill`). Issue 17: "auto"
# (coverage seed, class-balanced margin; docs/strategies.md). To go back to M-RARU, change this one line.
DEFAULT_STRATEGY = "auto"


def make_strategy(name: str, **kw: Any) -> Strategy:
    key = name.replace("-", "_").lower()
    if key not in STRATEGIES:
        raise ThriftyError(f"Unknown strategy {name!r}; choose from {sorted(STRATEGIES)}.")
    return STRATEGIES[key](**kw)


__all__ = [
    "PoolState", "Strategy", "StatefulStrategy", "WeightingStrategy", "STRATEGIES", "DEFAULT_STRATEGY", "make_strategy",
    "RandomStrategy", "UncertaintyStrategy", "MRARUStrategy", "DiversityStrategy", "CoverageStrategy", "AutoStrategy",
    "LLKDStrategy", "MEASURES", "entropy", "margin", "least_confidence",
]
