"""Budgets and stopping rules: budget (labels, tokens or dollars), plateau, target agreement."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ThriftyError

_BUDGET = re.compile(r"^\s*(\$)?\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*(labels?|tokens?|usd|dollars?|\$)?\s*$")


@dataclass
class Budget:
    """Upper bounds on what a run may spend; None = unbounded. Validation labels count too."""

    labels: int | None = None
    tokens: int | None = None
    dollars: float | None = None

    @classmethod
    def parse(cls, text: str | int | float | "Budget" | None) -> "Budget":
        """'500' or '500 labels' -> labels; '200k tokens' -> tokens; '$5' or '5 usd' -> dollars."""
        if text is None:
            return cls()
        if isinstance(text, Budget):
            return text
        if isinstance(text, (int, float)):
            return cls(labels=int(text))
        m = _BUDGET.match(str(text))
        if not m:
            raise ThriftyError(f"Cannot read budget {text!r}: use e.g. 500, '500 labels', '200k tokens' or '$5'.")
        dollar, num, mult, unit = m.groups()
        value = float(num) * {"": 1, "k": 1e3, "m": 1e6}[mult.lower()]
        unit = (unit or "").lower()
        if dollar or unit in {"usd", "dollar", "dollars", "$"}:
            return cls(dollars=value)
        if unit.startswith("token"):
            return cls(tokens=int(value))
        return cls(labels=int(value))

    def remaining_labels(self, spent: dict[str, float]) -> int:
        """How many more labels fit, using the mean cost per label so far for token/dollar budgets."""
        n = spent.get("labels", 0)
        rem = math.inf
        if self.labels is not None:
            rem = min(rem, self.labels - n)
        for key, bound in (("tokens", self.tokens), ("dollars", self.dollars)):
            if bound is None:
                continue
            used = spent.get(key, 0.0)
            if used >= bound:
                return 0
            per = 1.1 * used / n if n else 0.0  # 10% margin: texts vary in length
            if per > 0:
                rem = min(rem, math.floor((bound - used) / per))
        return int(max(0, rem)) if rem != math.inf else 2**62

    def describe(self) -> str:
        parts = []
        if self.labels is not None:
            parts.append(f"{self.labels:,} labels")
        if self.tokens is not None:
            parts.append(f"{self.tokens:,} tokens")
        if self.dollars is not None:
            parts.append(f"${self.dollars:,.2f}")
        return " / ".join(parts) or "unbounded"

    def overshoot(self, spent: dict[str, float]) -> str | None:
        """How far ``spent`` went past a token or dollar budget (None if it did not): such budgets are
        kept to within one batch in flight, whose cost is known only once it is answered."""
        over = []
        if self.tokens is not None and spent.get("tokens", 0) > self.tokens:
            t = spent["tokens"] - self.tokens
            over.append(f"{t:,.0f} tokens ({100 * t / max(self.tokens, 1):.1f}%) over the {self.tokens:,}-token budget")
        if self.dollars is not None and spent.get("dollars", 0.0) > self.dollars + 1e-12:
            d = spent["dollars"] - self.dollars
            over.append(f"${d:.4f} ({100 * d / max(self.dollars, 1e-12):.1f}%) over the ${self.dollars:,.2f} budget")
        return "; ".join(over) or None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Stopping:
    """Plateau: agreement gain below ``plateau_eps`` for ``plateau_rounds`` rounds (0 = off).
    Target: stop once validation agreement reaches ``target_agreement``."""

    plateau_eps: float = 0.002
    plateau_rounds: int = 0
    target_agreement: float | None = None
    max_rounds: int | None = None

    def check(self, history: list[dict[str, Any]]) -> str | None:
        if not history:
            return None
        last = history[-1]
        agr = last.get("val_agreement")
        if self.target_agreement is not None and agr is not None and agr >= self.target_agreement:
            return f"target agreement {self.target_agreement:.3f} reached ({agr:.3f})"
        if self.max_rounds is not None and last["round"] >= self.max_rounds:
            return f"max rounds ({self.max_rounds}) reached"
        k = self.plateau_rounds
        if k and len(history) > k:
            vals = [h.get("val_agreement") for h in history[-(k + 1) :]]
            if all(v is not None for v in vals):
                best_before = max(h.get("val_agreement") or 0.0 for h in history[: -k])
                if max(vals[1:]) - best_before < self.plateau_eps:
                    return f"plateau: agreement gained < {self.plateau_eps} for {k} rounds"
        return None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
