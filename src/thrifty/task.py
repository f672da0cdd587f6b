"""The classification task: label set, descriptions, few-shot examples and prompt template.

A :class:`Task` is loaded from YAML/JSON or from a comma-separated list. Its
``label_set_hash`` and ``prompt_hash`` are stable: they key the ledger, so changing the
prompt or the labels never reuses stale answers.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from .errors import TaskError, UnknownLabelError

DEFAULT_INSTRUCTIONS = "Classify the text into exactly one of the allowed labels."

TEMPLATE_FIELDS = frozenset({"instructions", "label_lines", "examples", "text"})  # what render() fills
DEFAULT_TEMPLATE = """{instructions}

Allowed labels:
{label_lines}

Answer with the label only.
{examples}
Text: {text}
Label:"""


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def text_sha256(text: str) -> str:
    """sha256 of a text's UTF-8 bytes (the ledger's text key)."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Example:
    """A few-shot example shown to the teacher."""

    text: str
    label: str


@dataclass(frozen=True)
class Task:
    """A label set plus everything the teacher is told about it."""

    labels: tuple[str, ...]
    descriptions: dict[str, str] = field(default_factory=dict)
    examples: tuple[Example, ...] = ()
    instructions: str = DEFAULT_INSTRUCTIONS
    template: str = DEFAULT_TEMPLATE
    name: str = "task"

    def __post_init__(self) -> None:
        if len(self.labels) < 2:
            raise TaskError(f"A task needs at least 2 labels, got {list(self.labels)}.")
        if len(set(self.labels)) != len(self.labels):
            dup = sorted({lab for lab in self.labels if self.labels.count(lab) > 1})
            raise TaskError(f"Duplicate labels in the label set: {dup}.")
        if any(not str(lab).strip() for lab in self.labels):
            raise TaskError("Labels must be non-empty strings.")
        for d in self.descriptions:
            if d not in self.labels:
                raise UnknownLabelError(f"Description given for unknown label {d!r}; labels are {list(self.labels)}.")
        for ex in self.examples:
            if ex.label not in self.labels:
                raise UnknownLabelError(f"Few-shot example has unknown label {ex.label!r}; labels are {list(self.labels)}.")
        for key in ("{text}",):
            if key not in self.template:
                raise TaskError(f"The prompt template must contain {key}.")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        except ValueError as e:
            raise TaskError(f"The prompt template cannot be read ({e}); write a literal brace as {{{{ or }}}}.") from None
        unknown = sorted(fields - TEMPLATE_FIELDS)
        if unknown:
            raise TaskError(
                f"The prompt template uses {', '.join('{' + f + '}' for f in unknown)}, which thrifty does not fill; "
                f"the fields are {', '.join('{' + f + '}' for f in sorted(TEMPLATE_FIELDS))}."
            )

    # ---- identity -------------------------------------------------------------------
    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @property
    def label_set_hash(self) -> str:
        """Hash of the ordered label names (the distribution's axis)."""
        return _sha(list(self.labels))[:16]

    @property
    def prompt_hash(self) -> str:
        """Hash of everything that shapes the prompt except the document itself."""
        return _sha(
            {
                "template": self.template,
                "instructions": self.instructions,
                "labels": list(self.labels),
                "descriptions": self.descriptions,
                "examples": [[e.text, e.label] for e in self.examples],
            }
        )[:16]

    def index(self, label: str) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise UnknownLabelError(f"Unknown label {label!r}; the label set is {list(self.labels)}.") from None

    # ---- prompts --------------------------------------------------------------------
    def label_lines(self) -> str:
        return "\n".join(
            f"- {lab}: {self.descriptions[lab]}" if self.descriptions.get(lab) else f"- {lab}" for lab in self.labels
        )

    def render(self, text: str) -> str:
        """The full single-turn prompt for one document."""
        examples = "".join(f"\nText: {e.text}\nLabel: {e.label}\n" for e in self.examples)
        return self.template.format(
            instructions=self.instructions, label_lines=self.label_lines(), examples=examples, text=text
        )

    def system_prompt(self) -> str:
        """Instructions and label list, for chat models (the shared prefix)."""
        return f"{self.instructions}\n\nAllowed labels:\n{self.label_lines()}\n\nAnswer with the label only."

    def chat_messages(self, text: str) -> list[dict[str, str]]:
        """Chat messages: system prompt, few-shot turns, then the document."""
        msgs = [{"role": "system", "content": self.system_prompt()}]
        for e in self.examples:
            msgs.append({"role": "user", "content": e.text})
            msgs.append({"role": "assistant", "content": e.label})
        msgs.append({"role": "user", "content": text})
        return msgs

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "labels": list(self.labels),
            "descriptions": dict(self.descriptions),
            "examples": [{"text": e.text, "label": e.label} for e in self.examples],
            "instructions": self.instructions,
            "template": self.template,
        }

    # ---- loading --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Task":
        raw = data.get("labels")
        if not raw:
            raise TaskError("The label file has no 'labels' entry.")
        if not isinstance(raw, (list, dict)):
            raise TaskError(f"'labels' must be a list of names or a mapping of name: description; got {raw!r}.")
        items = list(raw) if isinstance(raw, dict) else [i.get("name") if isinstance(i, dict) else i for i in raw]
        if any(i is None or not str(i).strip() for i in items):
            raise TaskError(f"The label set has an empty or null label: {items}. Every label needs a name.")
        labels: list[str] = []
        descriptions: dict[str, str] = dict(data.get("descriptions") or {})
        if isinstance(raw, dict):  # {name: description}
            for k, v in raw.items():
                labels.append(str(k))
                if v:
                    descriptions[str(k)] = str(v)
        else:
            for item in raw:
                if isinstance(item, dict):
                    if item.get("name") is None:
                        raise TaskError(f"Label entry {item!r} has no 'name'.")
                    labels.append(str(item["name"]))
                    if item.get("description"):
                        descriptions[str(item["name"])] = str(item["description"])
                else:
                    labels.append(str(item))
        examples = tuple(Example(str(e["text"]), str(e["label"])) for e in data.get("examples") or [])
        kwargs: dict[str, Any] = {}
        if data.get("instructions"):
            kwargs["instructions"] = str(data["instructions"])
        if data.get("template"):
            kwargs["template"] = str(data["template"])
        return cls(
            labels=tuple(labels),
            descriptions=descriptions,
            examples=examples,
            name=str(data.get("name") or "task"),
            **kwargs,
        )

    @classmethod
    def load(cls, spec: str | Path | Sequence[str]) -> "Task":
        """Load from a YAML/JSON file, a comma-separated string, or a list of names."""
        if not isinstance(spec, (str, Path)):
            if any(s is None for s in spec):
                raise TaskError(f"The label set has a null label: {list(spec)}. Every label needs a name.")
            return cls(labels=tuple(str(s) for s in spec))
        if not str(spec).strip():
            raise TaskError("The label set is empty: give --labels labels.yaml or --labels a,b,c.")
        p = Path(spec)
        if p.suffix.lower() in {".yaml", ".yml", ".json"} or p.exists():
            if not p.exists():
                raise TaskError(f"Label file {p} does not exist.")
            try:
                data = yaml.safe_load(p.read_text(encoding="utf-8"))
            except yaml.YAMLError as e:
                raise TaskError(f"Cannot parse label file {p}: {e}") from e
            if isinstance(data, list):
                data = {"labels": data}
            if not isinstance(data, dict):
                raise TaskError(f"Label file {p} must hold a mapping with 'labels' or a list of labels.")
            return cls.from_dict(data)
        labels = [s.strip() for s in str(spec).split(",") if s.strip()]
        return cls(labels=tuple(labels))
