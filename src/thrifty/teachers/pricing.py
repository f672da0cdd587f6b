"""Prices in dollars per 1,000 prompt / completion tokens, from an editable YAML table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ..errors import ThriftyError


@dataclass(frozen=True)
class Price:
    prompt_per_1k: float = 0.0
    completion_per_1k: float = 0.0

    def __post_init__(self) -> None:
        for name, v in (("prompt", self.prompt_per_1k), ("completion", self.completion_per_1k)):
            if not math.isfinite(v) or v < 0:
                raise ThriftyError(f"The {name} price must be a finite number of dollars per 1k tokens >= 0, not {v}.")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens / 1000.0 * self.prompt_per_1k + completion_tokens / 1000.0 * self.completion_per_1k


def load_price_table(path: str | Path | None = None) -> dict[str, Price]:
    """The shipped table (``thrifty/prices.yaml``), updated by a user file if given."""
    text = resources.files("thrifty").joinpath("prices.yaml").read_text(encoding="utf-8")
    table = _parse(yaml.safe_load(text), "built-in prices.yaml")
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ThriftyError(f"Price file {p} does not exist.")
        table.update(_parse(yaml.safe_load(p.read_text(encoding="utf-8")), str(p)))
    return table


def _parse(data: object, where: str) -> dict[str, Price]:
    if not isinstance(data, dict):
        raise ThriftyError(f"{where}: expected a mapping of model -> {{prompt, completion}}.")
    out = {}
    for model, v in data.items():
        if not isinstance(v, dict):
            raise ThriftyError(f"{where}: entry {model!r} must have 'prompt' and 'completion' prices per 1k tokens.")
        try:
            out[str(model)] = Price(float(v.get("prompt", 0.0)), float(v.get("completion", 0.0)))
        except (TypeError, ValueError, ThriftyError) as e:
            raise ThriftyError(f"{where}: entry {model!r}: {e}") from e
    return out


def price_for(
    model: str,
    table: dict[str, Price] | None = None,
    prompt_per_1k: float | None = None,
    completion_per_1k: float | None = None,
) -> Price:
    """Price for ``model``: command-line overrides, else the table (longest prefix match), else free."""
    table = table if table is not None else load_price_table()
    base = table.get(model)
    if base is None:
        matches = [k for k in table if model.startswith(k)]
        base = table[max(matches, key=len)] if matches else Price()
    return Price(
        base.prompt_per_1k if prompt_per_1k is None else prompt_per_1k,
        base.completion_per_1k if completion_per_1k is None else completion_per_1k,
    )
