"""Teachers: the LLMs (or recordings) that label texts, all behind one protocol.

Spec strings used by the CLI and :func:`make_teacher`:

- ``openai:MODEL``: any OpenAI-compatible server (``base_url``, key from ``api_key_env``)
- ``replay`` / ``replay:FILE``: recorded labels from the corpus columns or from a file
- ``local`` / ``local:qwen-0.5b`` / ``local:gemma-270m`` / ``local:/path/model.gguf``: llama.cpp in process
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, ThriftyError
from ..registry import Registry
from ..task import Task
from .base import RebuildableTeacher, Teacher, TeacherLabel, Usage
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
    price_cached_in: float | None = None,
    price_batch_in: float | None = None,
    price_batch_out: float | None = None,
    **kw: Any,
) -> Teacher:
    """Build a teacher from a spec string ``KIND[:ARG]`` (see module docstring; plug-in kinds too).

    The kind's builder in :data:`TEACHERS` is called as ``build(arg, task, corpus, price, base_url=...,
    api_key_env=..., **kw)``. ``price_cached_in`` and ``price_batch_in/out`` ($ per 1k tokens) set the
    cached-input and Batch API rates, as a run's recipe records them (a ``--prices`` table's, which a
    resumed run must keep)."""
    kind, _, arg = spec.partition(":")
    if kind not in TEACHERS:
        raise ConfigError(f"Unknown teacher {spec!r}: use openai:MODEL, replay[:FILE] or local[:MODEL] "
                          f"(teacher kinds here: {TEACHERS.names()}).")
    build = TEACHERS.get(kind)
    price = price_for_spec(spec, prices, price_in, price_out)
    rates = {"cached_prompt_per_1k": price_cached_in, "batch_prompt_per_1k": price_batch_in,
             "batch_completion_per_1k": price_batch_out}
    if any(v is not None for v in rates.values()):
        price = dataclasses.replace(price, **{k: v for k, v in rates.items() if v is not None})
    return build(arg, task, corpus, price, base_url=base_url, api_key_env=api_key_env, **kw)


def _openai(arg: str, task: Task, corpus: Any, price: Price, *, base_url: str | None, api_key_env: str,
            **kw: Any) -> Teacher:
    if not arg:
        raise ThriftyError("Give the model name: --teacher openai:MODEL (e.g. openai:gpt-4o-mini).")
    check_env_name(api_key_env)
    from .openai import OpenAITeacher

    return OpenAITeacher(task, model=arg, base_url=base_url or "https://api.openai.com/v1", api_key_env=api_key_env,
                         price=price, **kw)


def _replay(arg: str, task: Task, corpus: Any, price: Price, *, column: str = "teacher_label",
            **_server: Any) -> Teacher:  # base_url and api_key_env mean nothing to a recording
    from .replay import ReplayTeacher

    if corpus is None:
        raise ThriftyError("The replay teacher needs the corpus it replays labels for.")
    pk = {"price_in": price.prompt_per_1k, "price_out": price.completion_per_1k}
    if arg:
        return ReplayTeacher.from_file(task, corpus, arg, **pk)
    return ReplayTeacher.from_corpus_column(task, corpus, column, **pk)


def _local(arg: str, task: Task, corpus: Any, price: Price, *, base_url: str | None = None,
           api_key_env: str | None = None, **kw: Any) -> Teacher:  # in process: no server, no key
    from .local import LocalTeacher

    return LocalTeacher(task, model=arg or "default", price=price, **kw)


# teacher kind -> builder (see make_teacher). Plug-ins: entry-point group thrifty.teachers.
TEACHERS: Registry[Callable[..., Teacher]] = Registry("teacher", "thrifty.teachers")
for _kind, _build in {"openai": _openai, "replay": _replay, "local": _local}.items():
    TEACHERS.register(_kind, _build)
TEACHER_KINDS = tuple(TEACHERS.built_in())  # the built-in kinds; tests/test_teachers_contract.py covers each


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def check_env_name(name: str) -> None:
    """Refuse an ``api_key_env`` that is not an environment variable's name (a key pasted by mistake).

    The value is never repeated in the message, so a key cannot leak through it."""
    keyish = len(name or "") >= 32 and any(c.islower() for c in name) and any(c.isdigit() for c in name)
    if not _ENV_NAME.fullmatch(name or "") or keyish:
        raise ThriftyError(
            "--api-key-env takes the NAME of the environment variable holding the key (e.g. OPENAI_API_KEY), "
            "and the value given is not one: it looks like a key (not shown). Put the key in a variable "
            "(export OPENAI_API_KEY=...) and pass its name."
        )


def teacher_recipe(teacher: Teacher) -> dict[str, Any] | None:
    """How to rebuild ``teacher`` with :func:`make_teacher` (spec, server, env-var name, prices, HTTP knobs):
    the inverse of ``make_teacher``, saved with a run so that --resume and predict --cascade rebuild the same
    teacher at the same prices. Never a secret. A plug-in kind gives its own (``RebuildableTeacher.recipe``);
    None for a teacher made some other way."""
    from .local import LocalTeacher
    from .openai import OpenAITeacher
    from .replay import ReplayTeacher

    if isinstance(teacher, RebuildableTeacher):  # first: a plug-in (even a subclass of a built-in) says how it is rebuilt
        recipe = dict(teacher.recipe())
        if not str(recipe.get("spec", "")).partition(":")[0] in TEACHERS:
            raise ThriftyError(f"{type(teacher).__name__}.recipe() must name a registered teacher kind as 'spec' "
                               f"(KIND[:ARG]; kinds: {TEACHERS.names()}); got {recipe.get('spec')!r}.")
        return recipe
    if isinstance(teacher, OpenAITeacher):
        # an unknown price is not recorded, so the rebuilt teacher's price is unknown too (and a $ cap is refused)
        p = teacher.price
        price = {"price_in": p.prompt_per_1k, "price_out": p.completion_per_1k} if p.known else {}
        for key, v in (("price_cached_in", p.cached_prompt_per_1k), ("price_batch_in", p.batch_prompt_per_1k),
                       ("price_batch_out", p.batch_completion_per_1k)):
            if p.known and v is not None:
                price[key] = v
        return {"spec": f"openai:{teacher.model}", "base_url": teacher.base_url, "api_key_env": teacher.api_key_env,
                **price,
                "concurrency": teacher.concurrency, "max_retries": teacher.max_retries, "timeout": teacher.timeout,
                # decoding parameters (they are in the identity, so the ledger key depends on them)
                "temperature": teacher.temperature, "top_logprobs": teacher.top_logprobs,
                **({"max_tokens": teacher.identity()["max_tokens"]} if teacher._max_tokens_given else {}),
                **({"answer": teacher.answer} if teacher.answer != "auto" else {}),
                **({"extra_body": teacher.extra_body} if teacher.extra_body else {}),
                **({"batch_api": True, "batch_poll": teacher.batch_poll} if teacher.batch_api else {})}
    if isinstance(teacher, ReplayTeacher) and teacher.recorded:
        spec = f"replay:{teacher.recorded['file']}" if "file" in teacher.recorded else "replay"
        extra = {"column": teacher.recorded["column"]} if "column" in teacher.recorded else {}
        return {"spec": spec, "price_in": teacher.price_in, "price_out": teacher.price_out, **extra}
    if isinstance(teacher, LocalTeacher):
        return {"spec": f"local:{teacher.model}", "price_in": teacher.price.prompt_per_1k,
                "price_out": teacher.price.completion_per_1k, "max_doc_tokens": teacher.max_doc_tokens,
                "chat": teacher.chat}
    return None


def rebuild_teacher(recipe: dict[str, Any], task: Task, corpus: Any, **changes: Any) -> Teacher:
    """The teacher a :func:`teacher_recipe` describes, for ``corpus`` (a replay teacher reads its answers there);
    ``changes`` on top (None ignored; a ``prices`` table replaces the recorded prices)."""
    recipe = dict(recipe)
    changes = {k: v for k, v in changes.items() if v is not None}
    if "prices" in changes:  # a price table given now replaces the recorded prices
        for key in ("price_in", "price_out", "price_cached_in", "price_batch_in", "price_batch_out"):
            recipe.pop(key, None)
    recipe.update(changes)
    spec = recipe.pop("spec")
    if spec.partition(":")[0] in ("replay", "local"):  # HTTP knobs mean nothing in process (plug-ins keep theirs)
        for knob in ("concurrency", "max_retries", "timeout", "extra_body", "batch_api", "batch_poll"):
            recipe.pop(knob, None)
    return make_teacher(spec, task, corpus, **recipe)


__all__ = [
    "Teacher", "TeacherLabel", "Usage", "Ledger", "LedgerStats", "CachedTeacher", "make_teacher", "rebuild_teacher",
    "Price", "price_for", "load_price_table", "teacher_recipe", "check_env_name", "TEACHERS", "TEACHER_KINDS",
]
