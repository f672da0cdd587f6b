"""The teacher protocol: text in, label + distribution + confidence + usage out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import TeacherError
from ..task import Task


@dataclass
class Usage:
    """What one teacher call cost."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    cached_tokens: int = 0  # part of prompt_tokens served from the provider's prompt cache (cheaper)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class TeacherLabel:
    """One teacher answer for one text.

    ``label`` is None when the teacher abstained (or answered something that could not be
    mapped onto the label set; ``raw`` keeps the answer). ``probs`` is a distribution over
    ``task.labels`` (sums to 1), or None for an abstention. ``confidence`` is the teacher's
    own confidence (stated, or the max probability). ``parse == "rejected"`` marks a text the
    teacher refused (see :class:`TextsRejected`); ``raw`` then holds the error.
    """

    label: str | None
    probs: np.ndarray | None
    confidence: float | None
    raw: str = ""
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    parse: str = ""  # how the label was parsed: exact, normalised, fuzzy, logprobs, replay, abstain, rejected

    @property
    def abstained(self) -> bool:
        return self.label is None

    @property
    def rejected(self) -> bool:
        return self.parse == "rejected"


ResultCallback = Callable[[int, TeacherLabel], None]
RequestCallback = Callable[[int, str], None]  # (text index, "sent" | "refused" | "superseded"), see OpenAITeacher.label


class TextsRejected(TeacherError):
    """Some texts were refused for good; raised after every other answer was delivered.

    ``rejected`` maps a text's position to ``(kind, error)``: ``"rejected"`` for a per-text
    4xx (content filter, too long: asking again cannot help) and ``"gave_up"`` for a server
    error on that text alone after every retry. ``others`` is the message of failures that
    are not per text (the caller must still raise it), or None.
    """

    def __init__(self, rejected: dict[int, tuple[str, str]], n_texts: int, others: str | None = None):
        self.rejected = dict(rejected)
        self.others = others
        first = rejected[min(rejected)][1]
        super().__init__(f"The teacher refused {len(rejected)} of {n_texts} texts (first: {first}); they are set aside."
                         + (f" {others}" if others else ""))


@runtime_checkable
class Teacher(Protocol):
    """Anything that labels texts for a task.

    ``label`` must call ``on_result(i, label)`` for each input as soon as its answer is
    known (so the ledger can commit it at once), and return the labels in input order.
    It raises :class:`~thrifty.errors.TeacherError` when some texts could not be labelled;
    answers already delivered through ``on_result`` are kept.
    """

    task: Task

    def identity(self) -> dict[str, Any]:
        """Model name and decoding parameters: part of the ledger key (never secrets)."""
        ...

    def label(self, texts: Sequence[str], on_result: ResultCallback | None = None) -> list[TeacherLabel]: ...


@runtime_checkable
class RebuildableTeacher(Protocol):
    """A teacher that says how :func:`~thrifty.teachers.make_teacher` rebuilds it (a plug-in kind):
    ``{"spec": "KIND[:ARG]", **keyword arguments}``, saved in a run so that --resume and predict
    --cascade ask it again. Never a secret (name the environment variable that holds one)."""

    def recipe(self) -> dict[str, Any]: ...


def one_hot(task: Task, label: str | None) -> np.ndarray | None:
    if label is None:
        return None
    p = np.zeros(task.n_labels, dtype=np.float64)
    p[task.index(label)] = 1.0
    return p


def normalise(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    s = p.sum()
    return p / s if s > 0 else np.full_like(p, 1.0 / len(p))


def estimate_tokens(text: str) -> int:
    """Rough token count (~4 characters a token) for planning and for teachers that do not report usage."""
    return max(1, (len(text) + 3) // 4)
