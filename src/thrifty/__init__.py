"""thrifty: distil an LLM text classifier into a small, fast student, paying for few labels.

The public names below are imported on first use (PEP 562), so that ``thrifty --help`` and
``thrifty --version`` do not pay for scikit-learn, scipy and pandas (about 2-3 s on 2 cores).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {  # name -> the module that defines it
    "Corpus": ".corpus", "read_corpus": ".corpus", "ThriftyError": ".errors", "label": ".labelling",
    "DistillConfig": ".loop", "Distiller": ".loop", "build_report": ".report", "Budget": ".stopping",
    "Stopping": ".stopping", "Example": ".task", "Task": ".task", "Ledger": ".teachers", "make_teacher": ".teachers",
}

__all__ = ["__version__", *_PUBLIC]

if TYPE_CHECKING:  # for type checkers and IDEs: the eager imports
    from .corpus import Corpus, read_corpus
    from .errors import ThriftyError
    from .labelling import label
    from .loop import DistillConfig, Distiller
    from .report import build_report
    from .stopping import Budget, Stopping
    from .task import Example, Task
    from .teachers import Ledger, make_teacher


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'thrifty' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
