"""thrifty: distil an LLM text classifier into a small, fast student, paying for few labels."""

from __future__ import annotations

__version__ = "0.1.0"

from .corpus import Corpus, read_corpus
from .errors import ThriftyError
from .labelling import label
from .loop import DistillConfig, Distiller
from .report import build_report
from .stopping import Budget, Stopping
from .task import Example, Task
from .teachers import Ledger, make_teacher

__all__ = [
    "__version__", "Corpus", "read_corpus", "ThriftyError", "Distiller", "DistillConfig", "Budget",
    "Stopping", "Task", "Example", "Ledger", "make_teacher", "build_report", "label",
]
