"""A Hugging Face-style folder: the ONNX export + ``config.json`` + a ``README.md`` model card.

The card is written from the run's ``model_card.json`` (teacher, labels paid, dollars,
metrics) and the last row of its history (validation size, for the intervals). Agreement
with the teacher and accuracy come with 95% Wilson intervals wherever the number of rows
behind them is known; otherwise the card says the interval is unknown rather than guess.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..cascade import wilson_interval


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_facts(run: str | Path) -> dict[str, Any]:
    """``model_card.json`` merged with the last history row (``state.json``) of a run or model directory."""
    run = Path(run)
    model_dir = run / "model" if (run / "model" / "model.json").exists() else run
    card = _read_json(model_dir / "model_card.json")
    state = _read_json(run / "state.json")
    history = state.get("history") or []
    last = dict(history[-1]) if history else {}
    if "n_pool" in state:  # the pool accuracy is measured on every row neither trained nor validated on
        seen = set(state.get("train_idx") or []) | set(state.get("val_idx") or [])
        last.setdefault("pool_gold_rows", int(state["n_pool"]) - len(seen))
    return {"card": card, "last": last}


def _metric(value: Any, n: Any, what: str) -> str:
    if value is None:
        return f"{what}: not measured in this run."
    if isinstance(n, int) and n > 0:
        lo, hi = wilson_interval(round(float(value) * n), n)
        return f"{what}: **{float(value):.3f}** (95% Wilson interval {lo:.3f}-{hi:.3f}, n = {n})."
    return f"{what}: **{float(value):.3f}** (number of rows not recorded: interval unknown)."


def model_card(model: Any, facts: dict[str, Any], portable: str, note: str) -> str:
    """The README.md text (YAML front matter + sections)."""
    card, last = facts["card"], facts["last"]
    labels = list(model.labels)
    teacher = card.get("teacher") or {}
    task = card.get("task") or {}
    metrics = card.get("metrics") or {}
    dollars = card.get("dollars")
    tags = "\n".join(f"- {t}" for t in ("thrifty", "text-classification", "knowledge-distillation", "onnx"))
    lines = [
        "---", "library_name: onnx", "pipeline_tag: text-classification", f"tags:\n{tags}", "---", "",
        f"# {model.name or 'thrifty student'}: a text classifier distilled from an LLM", "",
        "Made with thrifty: an LLM teacher labelled as few texts as possible, and this small student learned "
        "from its answers.", "",
        "## Task", "", f"Task: `{task.get('name', '?')}`.", "",
        str(task.get("instructions") or task.get("prompt") or task.get("description") or
            "Classify each text into one of the labels below."), "",
        "Labels (index: name): " + ", ".join(f"{i}: `{lab}`" for i, lab in enumerate(labels)), "",
        *[f"- `{lab}`: {desc}" for lab, desc in (task.get("descriptions") or {}).items()],
        "",
        "## How it was made", "",
        f"- Teacher: `{teacher.get('model', '?')}` ({teacher.get('kind', '?')})",
        f"- Student: `{card.get('student', model.name)}` ({card.get('student_class', type(model.student).__name__)})",
        f"- Selection strategy: `{card.get('strategy', '?')}`; stopped because: {card.get('stop_reason') or '?'}",
        f"- Teacher labels paid: {card.get('labels_paid', '?')} (labels used: {card.get('labels_used', '?')})",
        f"- Dollars spent on the teacher: {'?' if dollars is None else f'${float(dollars):.4f}'}",
        f"- Run id: `{card.get('run_id', '?')}`", "",
        "## Evaluation", "",
        "- " + _metric(metrics.get("val_agreement"), last.get("val_labels"),
                       "Agreement with the teacher on held-out, teacher-labelled validation texts"),
        "- " + _metric(metrics.get("test_accuracy"), last.get("test_rows"), "Accuracy against gold labels (test split)"),
        "- " + _metric(metrics.get("pool_gold_accuracy"), last.get("pool_gold_rows"),
                       "Accuracy against gold labels on the unlabelled pool (never trained on)"), "",
        "## Intended use and limits", "",
        "- Intended for the task above, on texts like the pool it was distilled on. It copies the teacher, "
        "mistakes included: its ceiling is the teacher's accuracy, not the truth.",
        "- Agreement was measured on a small validation slice: read the interval, not only the number.",
        "- Texts far from the training pool (other domains, languages, lengths) can fail silently; monitor the "
        "confidence, or serve it with `thrifty serve --cascade` so unsure texts go back to the teacher.",
        "- Not for decisions about people without human review.", "",
        "## Use", "",
        "```bash", "pip install onnxruntime tokenizers numpy", 'python example.py "some text to classify"', "```", "",
        "`model.onnx` inputs: " + ("`input_ids`, `attention_mask` (int64, from `tokenizer.json`)" if portable == "full"
                                   else "`features` (see the note below)")
        + "; outputs: `probabilities` (float32, one column per label) and `label` (index into `labels.json`).",
    ]
    if note:
        lines += ["", f"**Note:** {note}"]
    return "\n".join(lines) + "\n"


def write_hf(model: Any, run: str | Path, d: Path, res: Any) -> None:
    """Add ``README.md`` and ``config.json`` to an ONNX export in ``d``."""
    facts = run_facts(run)
    labels = list(model.labels)
    (d / "README.md").write_text(model_card(model, facts, res.portable, res.note), encoding="utf-8")
    cfg = {"model_type": "thrifty-student", "student": model.name, "id2label": {str(i): lab for i, lab in enumerate(labels)},
           "label2id": {lab: i for i, lab in enumerate(labels)}, "num_labels": len(labels), "onnx": "model.onnx"}
    (d / "config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
    if facts["card"]:
        (d / "thrifty_model_card.json").write_text(json.dumps(facts["card"], indent=2, default=str), encoding="utf-8")
