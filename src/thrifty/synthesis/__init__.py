"""Synthesis: new labelled training texts written by an LLM (PGKD)."""

from .generators import Generation, Generator, LocalGenerator, OpenAIGenerator, generator_for, make_generator
from .pgkd import PGKD, PGKDConfig, make_synthesizer

__all__ = [
    "Generation", "Generator", "LocalGenerator", "OpenAIGenerator", "generator_for", "make_generator", "PGKD", "PGKDConfig",
    "make_synthesizer",
]
