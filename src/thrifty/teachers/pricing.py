"""Prices in dollars per 1,000 tokens: standard, cached-input and Batch API rates.

Where a price comes from, first match wins:

1. ``--price-in`` / ``--price-out`` (the table's cache and batch discounts are kept as ratios);
2. a user YAML table (``--prices FILE``; keys ``prompt``, ``completion``, ``cached_prompt``,
   ``batch_prompt``, ``batch_completion``);
3. the maintained table of the ``genai-prices`` package (the ``prices`` extra), for API models;
4. the shipped ``thrifty/prices.yaml`` (free local/replay teachers and a dated fallback for a few models).

A model none of them knows gets a price with ``known=False``: it costs $0 in the ledger, and a
dollar budget or cap that depends on it is refused before any request (:func:`require_known`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ThriftyError

log = logging.getLogger(__name__)

HOW_TO_PRICE = (
    "give one with --price-in and --price-out ($ per 1k prompt / completion tokens), or a YAML table with "
    "--prices FILE (see docs/teachers-openai.md), or install the maintained table: pip install 'thrifty[prices]'"
)


@dataclass(frozen=True)
class Price:
    """Dollars per 1k tokens. ``None`` rates fall back conservatively: cached input at the full
    prompt rate, Batch API rates at the standard rates (never an underestimate)."""

    prompt_per_1k: float = 0.0
    completion_per_1k: float = 0.0
    cached_prompt_per_1k: float | None = None
    batch_prompt_per_1k: float | None = None
    batch_completion_per_1k: float | None = None
    known: bool = True
    source: str = "default"

    def __post_init__(self) -> None:
        for name, v in (("prompt", self.prompt_per_1k), ("completion", self.completion_per_1k),
                        ("cached prompt", self.cached_prompt_per_1k), ("batch prompt", self.batch_prompt_per_1k),
                        ("batch completion", self.batch_completion_per_1k)):
            if v is not None and (not math.isfinite(v) or v < 0):
                raise ThriftyError(f"The {name} price must be a finite number of dollars per 1k tokens >= 0, not {v}.")

    def cost(self, prompt_tokens: float, completion_tokens: float, cached_tokens: float = 0, batch: bool = False) -> float:
        """Dollars for one call. ``cached_tokens`` are the part of ``prompt_tokens`` served from the
        provider's prompt cache (OpenAI's ``usage.prompt_tokens_details.cached_tokens``)."""
        p_in, p_out = self.rates(batch)
        cached = min(max(0.0, float(cached_tokens)), float(prompt_tokens))
        p_cached = self.cached_prompt_per_1k if self.cached_prompt_per_1k is not None else self.prompt_per_1k
        p_cached = min(p_cached, p_in)  # a batch rate below the cache rate applies to cached tokens too
        return ((prompt_tokens - cached) * p_in + cached * p_cached + completion_tokens * p_out) / 1000.0

    def rates(self, batch: bool = False) -> tuple[float, float]:
        """(prompt, completion) $ per 1k tokens, for the Batch API when ``batch``."""
        if not batch:
            return self.prompt_per_1k, self.completion_per_1k
        return (self.prompt_per_1k if self.batch_prompt_per_1k is None else self.batch_prompt_per_1k,
                self.completion_per_1k if self.batch_completion_per_1k is None else self.batch_completion_per_1k)

    def describe(self) -> str:
        if not self.known:
            return "unknown (priced at $0)"
        s = f"${self.prompt_per_1k:g} / ${self.completion_per_1k:g} per 1k prompt / completion tokens"
        if self.cached_prompt_per_1k is not None:
            s += f", cached input ${self.cached_prompt_per_1k:g}"
        if self.batch_prompt_per_1k is not None or self.batch_completion_per_1k is not None:
            b_in, b_out = self.rates(batch=True)
            s += f", Batch API ${b_in:g} / ${b_out:g}"
        return f"{s} (from {self.source})"


_FIELDS = {"prompt": "prompt_per_1k", "completion": "completion_per_1k", "cached_prompt": "cached_prompt_per_1k",
           "batch_prompt": "batch_prompt_per_1k", "batch_completion": "batch_completion_per_1k"}


def load_price_table(path: str | Path | None = None) -> dict[str, Price]:
    """The shipped table (``thrifty/prices.yaml``), updated by a user file if given."""
    text = resources.files("thrifty").joinpath("prices.yaml").read_text(encoding="utf-8")
    table = _parse(yaml.safe_load(text), "built-in prices.yaml")
    if path is not None:
        table.update(load_user_table(path))
    return table


def load_user_table(path: str | Path) -> dict[str, Price]:
    p = Path(path)
    if not p.exists():
        raise ThriftyError(f"Price file {p} does not exist.")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ThriftyError(f"Price file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    return _parse(data, str(p), source=f"--prices {p.name}")


def _parse(data: object, where: str, source: str = "thrifty/prices.yaml") -> dict[str, Price]:
    if not isinstance(data, dict):
        raise ThriftyError(f"{where}: expected a mapping of model -> {{prompt, completion}} ($ per 1k tokens).")
    out = {}
    for model, v in data.items():
        if not isinstance(v, dict) or "prompt" not in v or "completion" not in v:
            raise ThriftyError(f"{where}: entry {model!r} needs 'prompt' and 'completion' prices per 1k tokens.")
        unknown = set(v) - set(_FIELDS)
        if unknown:
            raise ThriftyError(f"{where}: entry {model!r} has unknown keys {sorted(unknown)}; use {sorted(_FIELDS)}.")
        try:
            kw = {_FIELDS[k]: float(x) for k, x in v.items() if x is not None}
        except (TypeError, ValueError):
            raise ThriftyError(f"{where}: entry {model!r} has a price that is not a number.") from None
        if any(x < 0 for x in kw.values()):
            raise ThriftyError(f"{where}: entry {model!r} has a negative price.")
        try:
            out[str(model)] = Price(**kw, source=source)
        except ThriftyError as e:
            raise ThriftyError(f"{where}: entry {model!r}: {e}") from None
    return out


def _match(model: str, table: dict[str, Price]) -> Price | None:
    """Exact key, else the longest key that prefixes the model name."""
    if model in table:
        return table[model]
    keys = [k for k in table if model.startswith(k)]
    return table[max(keys, key=len)] if keys else None


@lru_cache(maxsize=256)
def maintained_price(model: str, provider: str | None = "openai") -> Price | None:
    """The ``genai-prices`` rates for ``model`` (None if the package is absent or does not know it).

    Looks in ``provider`` first, then in every provider. The package ships its data: no network.
    """
    try:
        from genai_prices import Usage, calc_price
    except ImportError:
        return None
    m = 1_000_000

    def calc(usage: Any, prov: str | None, **kw: Any) -> Any:
        return calc_price(usage, model_ref=model, provider_id=prov, **kw)

    for prov in dict.fromkeys([provider, None]):
        try:
            std = calc(Usage(input_tokens=m, output_tokens=m), prov)
        except (LookupError, ValueError):
            continue
        try:
            cached = calc(Usage(input_tokens=m, cache_read_tokens=m), prov).input_price
            batch = calc(Usage(input_tokens=m, output_tokens=m), prov, price_context={"processing": "batch"})
        except (LookupError, ValueError, TypeError):  # older package: no batch context
            cached, batch = std.input_price, std
        to1k = lambda x: float(x) / 1000.0  # noqa: E731  ($ per 1M tokens -> per 1k)
        name = getattr(getattr(std, "model", None), "id", model)
        return Price(to1k(std.input_price), to1k(std.output_price), to1k(cached), to1k(batch.input_price),
                     to1k(batch.output_price), source=f"genai-prices ({name})")
    return None


def price_for(
    model: str,
    table: dict[str, Price] | None = None,
    prompt_per_1k: float | None = None,
    completion_per_1k: float | None = None,
    *,
    user_table: dict[str, Price] | None = None,
    maintained: bool = False,
) -> Price:
    """Price for ``model``; see the module docstring for the order. ``maintained`` consults
    ``genai-prices`` (API models only: a local or recorded teacher is free unless told otherwise)."""
    table = table if table is not None else load_price_table()
    base = (_match(model, user_table) if user_table else None)
    if base is None and maintained:
        base = maintained_price(model)
    if base is None:
        base = _match(model, table)
    if base is None:
        base = Price(known=False, source="nowhere")
    if prompt_per_1k is None and completion_per_1k is None:
        return base
    if not base.known and (prompt_per_1k is None or completion_per_1k is None):
        raise ThriftyError(f"No price is known for {model!r}: give both --price-in and --price-out.")
    for name, v in (("--price-in", prompt_per_1k), ("--price-out", completion_per_1k)):
        if v is not None and v < 0:
            raise ThriftyError(f"{name} must be 0 or more; got {v}.")
    p_in = base.prompt_per_1k if prompt_per_1k is None else prompt_per_1k
    p_out = base.completion_per_1k if completion_per_1k is None else completion_per_1k
    if not base.known:  # both given: nothing else is known about the model
        return Price(p_in, p_out, known=True, source="--price-in/--price-out")
    # keep the table's discount ratios (cache, batch) on top of the overridden list prices
    scale = lambda new, old, x: None if x is None else (x * new / old if old else new)  # noqa: E731
    return replace(base, prompt_per_1k=p_in, completion_per_1k=p_out,
                   cached_prompt_per_1k=scale(p_in, base.prompt_per_1k, base.cached_prompt_per_1k),
                   batch_prompt_per_1k=scale(p_in, base.prompt_per_1k, base.batch_prompt_per_1k),
                   batch_completion_per_1k=scale(p_out, base.completion_per_1k, base.batch_completion_per_1k),
                   source=f"--price-in/--price-out over {base.source}")


def teacher_price(teacher: Any) -> Price | None:
    """The :class:`Price` a teacher (or a ledger-wrapped one) charges with, if it has one."""
    inner = getattr(teacher, "teacher", teacher)
    price = getattr(inner, "price", None)
    return price if isinstance(price, Price) else None


def require_known(teacher: Any, what: str) -> None:
    """Refuse ``what`` (a dollar budget or cap) when the teacher's price is unknown: it would never bind."""
    price = teacher_price(teacher)
    if price is not None and not price.known:
        model = getattr(getattr(teacher, "teacher", teacher), "model", "this model")
        raise ThriftyError(f"{what} needs a price, but none is known for {model!r}: {HOW_TO_PRICE}.")


def price_for_spec(spec: str, prices: str | Path | None = None, price_in: float | None = None,
                   price_out: float | None = None) -> Price:
    """The price of a teacher spec (``openai:MODEL``, ``local[:...]``, ``replay[:...]``) as the CLI resolves it."""
    kind, _, arg = spec.partition(":")
    user = load_user_table(prices) if prices is not None else None
    if kind == "openai":
        return price_for(arg, load_price_table(), price_in, price_out, user_table=user, maintained=True)
    return price_for(kind, load_price_table(), price_in, price_out, user_table=user)
