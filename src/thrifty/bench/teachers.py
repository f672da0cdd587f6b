"""Simulated teachers for benchmarks: ``oracle`` (gold) and ``noisy:<rate>`` (class-conditional noise).

They are ordinary :class:`~thrifty.teachers.base.Teacher` implementations, so a benchmark
sends them through the same ledger and loop as a paid LLM. Answers are a pure function of
(text, seed), so the ledger cache stays consistent and runs are reproducible. Each answer
is costed as if a priced model read the rendered prompt (default: ``gpt-4o-mini`` from the
price table), which gives the dollars axis of the benchmark plots.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ThriftyError
from ..task import Task, text_sha256
from ..teachers.base import ResultCallback, TeacherLabel, Usage, estimate_tokens, one_hot
from ..teachers.pricing import Price


class OracleTeacher:
    """Answers the gold label of each text (texts without gold are abstentions)."""

    def __init__(self, task: Task, gold: Mapping[str, str], price: Price = Price(), name: str = "oracle"):
        self.task = task
        self.gold = dict(gold)  # text sha256 -> gold label
        self.price = price
        self.name = name
        self._overhead = estimate_tokens(task.render(""))

    def identity(self) -> dict[str, Any]:
        return {"model": self.name, "kind": "simulated"}

    def answer(self, text: str) -> str | None:
        """The label this teacher gives ``text`` (no cost, no ledger: for evaluation)."""
        return self.gold.get(text_sha256(text))

    def label(self, texts: Sequence[str], on_result: ResultCallback | None = None) -> list[TeacherLabel]:
        out = []
        for i, t in enumerate(texts):
            t0 = time.perf_counter()
            lab = self.answer(t)
            pt = self._overhead + estimate_tokens(t)
            ct = estimate_tokens(lab) if lab is not None else 0
            usage = Usage(pt, ct, time.perf_counter() - t0, self.price.cost(pt, ct))
            res = TeacherLabel(lab, one_hot(self.task, lab), 1.0 if lab is not None else None,
                               raw=lab or "", usage=usage, parse="simulated" if lab is not None else "abstain")
            out.append(res)
            if on_result:
                on_result(i, res)
        return out


class NoisyTeacher(OracleTeacher):
    """Gold label corrupted with probability ``rate`` through a class-conditional confusion matrix.

    Row k of the confusion matrix keeps class k with probability ``1 - rate`` and spreads
    ``rate`` over the other classes with Dirichlet(1) weights drawn from ``seed``, so some
    classes are confused with each other much more than others, as with a real LLM.
    """

    def __init__(self, task: Task, gold: Mapping[str, str], rate: float, seed: int = 0, price: Price = Price()):
        if not 0.0 <= rate < 1.0:
            raise ThriftyError(f"noisy:<rate> needs 0 <= rate < 1; got {rate}.")
        super().__init__(task, gold, price=price, name=f"noisy:{rate:g}:seed{seed}")
        self.rate = rate
        self.seed = seed
        k = task.n_labels
        rng = np.random.default_rng(seed)
        C = np.zeros((k, k))
        for i in range(k):
            w = rng.dirichlet(np.ones(k - 1))
            C[i, [j for j in range(k) if j != i]] = rate * w
            C[i, i] = 1.0 - rate
        self.confusion = C

    def answer(self, text: str) -> str | None:
        g = super().answer(text)
        if g is None:
            return None
        h = hashlib.sha256(f"{self.seed}:{text_sha256(text)}".encode()).digest()
        u = int.from_bytes(h[:8], "little") / 2**64
        row = np.cumsum(self.confusion[self.task.index(g)])
        return self.task.labels[min(int(np.searchsorted(row, u, side="right")), self.task.n_labels - 1)]
