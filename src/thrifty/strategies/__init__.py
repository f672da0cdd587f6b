"""Selection strategies: which unlabelled documents to pay the teacher for next."""

from __future__ import annotations

from functools import partial
from typing import Any

from ..registry import Registry
from .auto import AutoStrategy
from .base import MEASURES, ColdStartStrategy, PoolState, StatefulStrategy, Strategy, WeightingStrategy, entropy, least_confidence, margin
from .coverage import CoverageStrategy
from .diversity import DiversityStrategy
from .llkd import LLKDStrategy
from .mraru import MRARUStrategy
from .uncertainty import RandomStrategy, UncertaintyStrategy


# name -> class or factory; its keyword parameters are the spec parameters. Plug-ins: entry-point group thrifty.strategies.
STRATEGIES: Registry[Any] = Registry("strategy", "thrifty.strategies")
for _name, _factory in {
    "random": RandomStrategy,
    "least_confidence": partial(UncertaintyStrategy, measure="least_confidence"),
    "margin": partial(UncertaintyStrategy, measure="margin"),
    "entropy": partial(UncertaintyStrategy, measure="entropy"),
    "mraru": MRARUStrategy,
    "diversity": DiversityStrategy,
    "llkd": LLKDStrategy,
    "coverage": CoverageStrategy,
    "auto": AutoStrategy,
}.items():
    STRATEGIES.register(_name, _factory)


# The strategy used when none is named (Distiller, DistillConfig, `thrifty distill`). Issue 17: "auto"
# (coverage seed, class-balanced margin; docs/strategies.md). To go back to M-RARU, change this one line.
DEFAULT_STRATEGY = "auto"


def make_strategy(name: str, **kw: Any) -> Strategy:
    """Build the strategy ``name`` (built-in or plug-in) with its parameters ``kw``."""
    return STRATEGIES.get(name.replace("-", "_").lower())(**kw)


__all__ = [
    "PoolState", "Strategy", "ColdStartStrategy", "StatefulStrategy", "WeightingStrategy", "STRATEGIES", "DEFAULT_STRATEGY", "make_strategy",
    "RandomStrategy", "UncertaintyStrategy", "MRARUStrategy", "DiversityStrategy", "CoverageStrategy", "AutoStrategy",
    "LLKDStrategy", "MEASURES", "entropy", "margin", "least_confidence",
]
