"""The PGKD prompt: label taxonomy, the student's validation report, example sets, and the
JSON schema the generator must follow.

The prompt follows Di Palo et al. (EMNLP 2024): the LLM sees what the student gets right,
what it gets wrong, and where it is confidently wrong (hard negatives), and is asked for
new labelled texts aimed at the weakest classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from ..task import Task


@dataclass
class Shown:
    """A validation example shown to the generator: text, teacher label, student prediction."""

    text: str
    label: str
    predicted: str
    confidence: float


@dataclass
class ExampleSets:
    """The three example sets of the PGKD prompt (disjoint)."""

    correct: list[Shown] = field(default_factory=list)
    wrong: list[Shown] = field(default_factory=list)
    hard: list[Shown] = field(default_factory=list)


def class_report(task: Task, y_true: np.ndarray, y_pred: np.ndarray) -> list[dict[str, Any]]:
    """Per-class precision / recall / F1 / support of the student on teacher-labelled validation data."""
    k = np.arange(task.n_labels)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=k, zero_division=0)
    return [
        {"label": task.labels[i], "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i in k
    ]


def weakest_classes(report: list[dict[str, Any]], n: int) -> list[str]:
    """Labels ordered from lowest F1 (ties: more support first); classes absent from validation last."""
    seen = [r for r in report if r["support"] > 0]
    unseen = [r for r in report if r["support"] == 0]
    seen.sort(key=lambda r: (r["f1"], -r["support"]))
    return [r["label"] for r in seen + unseen][:n]


def select_examples(
    task: Task,
    texts: Sequence[str],
    y_true: np.ndarray,
    proba: np.ndarray,
    rng: np.random.Generator,
    n_correct: int = 16,
    n_wrong: int = 16,
    n_hard: int = 16,
    hard_confidence: float = 0.5,
) -> ExampleSets:
    """Correct (random), hard negatives (wrong with confidence >= ``hard_confidence``, most
    confident first) and misclassified (random among the remaining wrong ones)."""
    pred = proba.argmax(axis=1)
    conf = proba.max(axis=1)
    ok = np.flatnonzero(pred == y_true)
    bad = np.flatnonzero(pred != y_true)
    hard_pool = bad[conf[bad] >= hard_confidence]
    hard = hard_pool[np.argsort(-conf[hard_pool], kind="stable")][:n_hard] if n_hard > 0 else np.zeros(0, dtype=int)
    rest = np.setdiff1d(bad, hard)
    wrong = rng.permutation(rest)[:n_wrong]
    correct = rng.permutation(ok)[:n_correct]

    def shown(idx: np.ndarray) -> list[Shown]:
        return [Shown(texts[i], task.labels[y_true[i]], task.labels[pred[i]], float(conf[i])) for i in idx]

    return ExampleSets(correct=shown(correct), wrong=shown(wrong), hard=shown(hard))


def output_schema(task: Task, n: int, max_chars: int, bounded: bool = True) -> dict[str, Any]:
    """JSON schema of the answer: {"examples": [{"label": <one of the labels>, "text": str}, ...]}.

    ``bounded`` adds maxItems / maxLength (grammar backends such as llama.cpp honour them and
    cannot run away); OpenAI's strict mode rejects some of those keywords, so it passes False.
    """
    text: dict[str, Any] = {"type": "string"}
    items: dict[str, Any] = {"type": "array", "items": {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(task.labels)}, "text": text},
        "required": ["label", "text"],
        "additionalProperties": False,
    }}
    if bounded:
        text.update(minLength=3, maxLength=max_chars)
        items.update(minItems=1, maxItems=n)
    return {"type": "object", "properties": {"examples": items}, "required": ["examples"], "additionalProperties": False}


def _clip(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def build_messages(
    task: Task,
    report: list[dict[str, Any]] | None,
    examples: ExampleSets,
    n: int,
    targets: Sequence[str],
    max_chars: int,
) -> list[dict[str, str]]:
    """Chat messages asking for ``n`` new labelled texts aimed at ``targets`` (the weak classes)."""
    system = (
        "You write training data for a small text classifier. You are shown the label taxonomy, "
        "how the classifier currently performs, and examples it gets right and wrong. Write new, "
        "realistic, varied texts that would teach it what it currently gets wrong. Never copy the "
        "examples. Answer with JSON only."
    )
    parts = [f"Task: {task.instructions}", "", "Labels:", task.label_lines(), ""]
    if report is not None:
        parts.append("Classifier report on validation data (precision / recall / F1 / support):")
        parts += [f"- {r['label']}: {r['precision']:.2f} / {r['recall']:.2f} / {r['f1']:.2f} / {r['support']}" for r in report]
        parts.append("")
    if examples.correct:
        parts.append("Texts it classifies correctly:")
        parts += [f"- [{e.label}] {_clip(e.text)}" for e in examples.correct]
        parts.append("")
    if examples.wrong:
        parts.append("Texts it misclassifies (true label -> its guess):")
        parts += [f"- [{e.label} -> {e.predicted}] {_clip(e.text)}" for e in examples.wrong]
        parts.append("")
    if examples.hard:
        parts.append("Hard negatives: texts it gets wrong with high confidence (true label -> its guess, confidence):")
        parts += [f"- [{e.label} -> {e.predicted}, {e.confidence:.2f}] {_clip(e.text)}" for e in examples.hard]
        parts.append("")
    parts.append(
        f"Write {n} new texts, mostly for these weak labels: {', '.join(targets)}. Each text must clearly "
        f"belong to its label, be at most {max_chars} characters, and look like the texts above. "
        'Answer as JSON: {"examples": [{"label": "<label>", "text": "<text>"}, ...]}'
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(parts)}]
