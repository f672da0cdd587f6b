"""The plug-in interface between the distillation loop and a synthesiser.

After each round the loop hands the synthesiser a frozen :class:`RoundContext` (what it may see
and call) and applies the :class:`RoundChange` it returns. A synthesiser never sees, imports or
assigns into the loop; what it keeps across rounds (its examples, cycles, spend) is its own state
(``state_dict``/``load_state``), saved with the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ..task import Task
from ..teachers.base import TeacherLabel, Usage


@dataclass(frozen=True)
class RoundContext:
    """One round, as a synthesiser sees it."""

    task: Task
    round: int
    random_state: int
    texts: Sequence[str]  # the pool's texts (generated texts never join them)
    X: Any  # the pool's feature rows
    usable: np.ndarray  # pool rows that can be labelled (non-empty, distinct texts)
    val_idx: np.ndarray  # the validation slice (pool rows)
    val_y: np.ndarray  # the teacher's label of each, as a class index (-1: it abstained)
    student: Any  # this round's fitted student
    labels_left: int  # labels the budget still allows (generation and re-labels count too)
    transform: Callable[[Sequence[str]], Any]  # texts -> feature rows (the run's fitted features)
    refit: Callable[[Any, np.ndarray], Any]  # (extra rows, their labels) -> a new student on this round's labels plus them
    relabel: Callable[[Sequence[str]], "list[TeacherLabel]"]  # the teacher, through the ledger (cached, costed)
    record_generation: Callable[[str, Usage, str], None]  # (model, usage, key): a "generate" event in the ledger
    checkpoint: Callable[[], None]  # save the run now (a paid generation survives a crash)

    @property
    def val_labelled(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, class indices) of the validation rows the teacher labelled."""
        ok = self.val_y >= 0
        return np.asarray(self.val_idx, dtype=int)[ok], self.val_y[ok]


@dataclass(frozen=True)
class RoundChange:
    """What a synthesiser asks the loop to change after a round."""

    history: dict[str, Any] = field(default_factory=dict)  # fields for the round's history row
    student: Any = None  # the student to keep instead of the round's own (None: keep it)
    reevaluate: bool = False  # the student or the spend changed: the loop evaluates the round again


class Synthesizer(Protocol):
    """What the loop calls on a synthesiser (see :class:`~thrifty.synthesis.pgkd.PGKD`)."""

    name: str

    def after_round(self, ctx: RoundContext) -> RoundChange: ...

    def training_rows(self, transform: Callable[[Sequence[str]], Any], task: Task) -> tuple[Any, np.ndarray] | None:
        """Feature rows and class indices of the generated examples kept so far (None: none)."""

    def add_spend(self, spent: dict[str, float]) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any] | None) -> None: ...
