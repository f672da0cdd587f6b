"""Synthesis: new labelled training texts written by an LLM (PGKD)."""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from . import pgkd as _pgkd
from .base import RoundChange, RoundContext, Synthesizer
from .generators import Generation, Generator, LocalGenerator, OpenAIGenerator, generator_for, make_generator
from .pgkd import PGKD, PGKDConfig

# synthesizer name -> what its spec parameters build (pgkd: its PGKDConfig). A plug-in (entry-point group
# thrifty.synthesizers) registers a class built as ``cls(generator=..., **params)`` implementing the ``Synthesizer``
# protocol (synthesis/base.py): the loop hands it a frozen ``RoundContext`` and applies the ``RoundChange`` it returns.
SYNTHESIZERS: Registry[Any] = Registry("synthesizer", "thrifty.synthesizers")
SYNTHESIZERS.register("pgkd", PGKDConfig)


def make_synthesizer(name: str, params: dict[str, Any] | None = None, generator: Generator | None = None,
                     **generator_kw: Any) -> Any:
    """Build the synthesizer ``name`` (``pgkd`` or a plug-in) from its spec parameters."""
    if name == "pgkd":
        return _pgkd.make_synthesizer(name, params, generator, **generator_kw)
    # a ``generator`` spec parameter names the generator built above; the plug-in gets the object
    return SYNTHESIZERS.get(name)(generator=generator, **{k: v for k, v in (params or {}).items() if k != "generator"})


__all__ = [
    "Generation", "Generator", "LocalGenerator", "OpenAIGenerator", "generator_for", "make_generator", "PGKD", "PGKDConfig",
    "SYNTHESIZERS", "make_synthesizer", "RoundContext", "RoundChange", "Synthesizer",
]
