"""Teachers: the LLMs (or recordings) that label texts, all behind one protocol.

Spec strings used by the CLI and :func:`make_teacher`:

- ``openai:MODEL``: any OpenAI-compatible server (``base_url``, key from ``api_key_env``)
- ``replay`` / ``replay:FILE``: recorded labels from the corpus columns or from a file
- ``local`` / ``local:qwen-0.5b`` / ``local:gemma-270m`` / ``local:/path/model.gguf``: llama.cpp in process
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ThriftyError
from ..task import Task
from .base import Teacher, TeacherLabel, Usage
from .ledger import CachedTeacher, Ledger, LedgerStats
from .pricing import Price, load_price_table, price_for, price_for_spec


def make_teacher(
    spec: str,
    task: Task,
    corpus: Any = None,
    *,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    prices: str | Path | None = None,
    price_in: float | None = None,
    price_out: float | None = None,
    **kw: Any,
) -> Teacher:
    """Build a teacher from a spec string (see module docstring)."""
    kind, _, arg = spec.partition(":")
    if kind not in ("openai", "replay", "local"):
        raise ThriftyError(f"Unknown teacher {spec!r}: use openai:MODEL, replay[:FILE] or local[:MODEL].")
    if kind == "openai" and not arg:
        raise ThriftyError("Give the model name: --teacher openai:MODEL (e.g. openai:gpt-4o-mini).")
    price = price_for_spec(spec, prices, price_in, price_out)
    if kind == "openai":
        from .openai import OpenAITeacher

        if not base_url:
            base_url = "https://api.openai.com/v1"
        return OpenAITeacher(
            task, model=arg, base_url=base_url, api_key_env=api_key_env,
            price=price, **kw,
        )
    if kind == "replay":
        from .replay import ReplayTeacher

        if corpus is None:
            raise ThriftyError("The replay teacher needs the corpus it replays labels for.")
        pk = {"price_in": price.prompt_per_1k, "price_out": price.completion_per_1k}
        if arg:
            return ReplayTeacher.from_file(task, corpus, arg, **pk)
        col = kw.get("column", "teacher_label")
        return ReplayTeacher.from_corpus_column(task, corpus, col, **pk)
    from .local import LocalTeacher

    return LocalTeacher(task, model=arg or "default", price=price, **kw)


__all__ = [
    "Teacher", "TeacherLabel", "Usage", "Ledger", "LedgerStats", "CachedTeacher", "make_teacher",
    "Price", "price_for", "load_price_table",
]
