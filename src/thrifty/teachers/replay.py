"""Replay teacher: recorded labels (and confidences or distributions) from a column or file.

This is how the recorded LLMs in the benchmark datasets are used, and how a team re-uses
labels it already paid for elsewhere. Lookup is by text hash; a file keyed by ``id`` or by
pool ``row`` is mapped to texts through the corpus it is used with.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..corpus import Corpus, read_corpus
from ..errors import CorpusError, TaskError
from ..task import Task, text_sha256
from .base import ResultCallback, TeacherLabel, Usage, estimate_tokens, normalise
from .parsing import parse_label

LABEL_COLS = ("teacher_label",)
CONF_COLS = ("teacher_confidence",)
PROBS_COLS = ("teacher_probs",)


class ReplayTeacher:
    """Answers from a recording; texts it has no record for are abstentions (never invented)."""

    def __init__(
        self,
        task: Task,
        records: dict[str, dict[str, Any]],
        name: str = "replay",
        price_in: float = 0.0,
        price_out: float = 0.0,
    ):
        self.task = task
        self.records = records  # text sha256 -> {label, confidence, probs, prompt_tokens}
        self.name = name
        self.price_in = price_in
        self.price_out = price_out
        self.recorded: dict[str, str] = {}  # {"column": ...} or {"file": ...}: where the recording came from
        self._prompt_overhead = estimate_tokens(task.render(""))

    def identity(self) -> dict[str, Any]:
        return {"model": self.name, "kind": "replay"}

    def label(self, texts: Sequence[str], on_result: ResultCallback | None = None) -> list[TeacherLabel]:
        out = []
        for i, t in enumerate(texts):
            t0 = time.perf_counter()
            rec = self.records.get(text_sha256(t))
            pt = int(rec["prompt_tokens"]) if rec and rec.get("prompt_tokens") else self._prompt_overhead + estimate_tokens(t)
            ct = 1 if rec and rec.get("label") is not None else 0
            usage = Usage(pt, ct, time.perf_counter() - t0, pt / 1000 * self.price_in + ct / 1000 * self.price_out)
            lab = self._to_label(rec, usage)
            out.append(lab)
            if on_result:
                on_result(i, lab)
        return out

    def _to_label(self, rec: dict[str, Any] | None, usage: Usage) -> TeacherLabel:
        if rec is None or rec.get("label") is None:
            return TeacherLabel(None, None, None, raw="" if rec is None else str(rec.get("raw", "")), usage=usage, parse="abstain")
        label = rec["label"]
        probs = rec.get("probs")
        conf = rec.get("confidence")
        if probs is None:
            p = np.zeros(self.task.n_labels)
            p[self.task.index(label)] = 1.0
        else:
            p = probs
        if conf is None:
            conf = float(p.max())
        return TeacherLabel(label, p, float(conf), raw=str(rec.get("raw", label)), usage=usage, parse="replay")

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_table(
        cls,
        task: Task,
        corpus: Corpus,
        rows: dict[str, list],
        key: str,
        name: str,
        **kw: Any,
    ) -> "ReplayTeacher":
        """Build from column lists. ``key`` is 'text', 'id' or 'row' (position in ``corpus``)."""
        label_col = _first(rows, LABEL_COLS, required=True)
        conf_col = _first(rows, CONF_COLS)
        probs_col = _first(rows, PROBS_COLS)
        n = len(rows[label_col])
        if key == "text":
            keys = [text_sha256(str(t)) for t in rows["text"]]
        elif key == "id":
            pos = {str(i): j for j, i in enumerate(corpus.ids)}
            keys = [text_sha256(corpus.texts[pos[str(i)]]) if str(i) in pos else None for i in rows["id"]]
        elif key == "row":
            keys = [text_sha256(corpus.texts[int(r)]) if 0 <= int(r) < len(corpus) else None for r in rows["row"]]
        else:
            raise CorpusError(f"Unknown replay key {key!r}: use text, id or row.")
        records: dict[str, dict[str, Any]] = {}
        bad: list[str] = []
        for j in range(n):
            k = keys[j]
            if k is None or k in records:
                continue
            raw = rows[label_col][j]
            raw = None if raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw).strip() == "" else str(raw)
            label = None
            if raw is not None:
                label, _ = parse_label(raw, task.labels)
                if label is None:
                    bad.append(raw)
            rec: dict[str, Any] = {"label": label, "raw": raw or ""}
            if conf_col and rows[conf_col][j] is not None and str(rows[conf_col][j]) != "":
                c = float(rows[conf_col][j])
                rec["confidence"] = None if math.isnan(c) else c
            if probs_col and rows[probs_col][j]:
                d = json.loads(rows[probs_col][j]) if isinstance(rows[probs_col][j], str) else rows[probs_col][j]
                if isinstance(d, dict):
                    rec["probs"] = normalise(np.array([float(d.get(lab, 0.0)) for lab in task.labels]))
                else:
                    rec["probs"] = normalise(np.array(d, dtype=float))
            if "prompt_tokens" in rows and rows["prompt_tokens"][j] not in (None, ""):
                rec["prompt_tokens"] = int(float(rows["prompt_tokens"][j]))
            records[k] = rec
        if bad and len(bad) > 0.5 * n:
            raise TaskError(
                f"{len(bad)} of {n} recorded labels are not in the label set (e.g. {sorted(set(bad))[:3]}); "
                f"labels are {list(task.labels)}. Check --labels."
            )
        return cls(task, records, name=name, **kw)

    @classmethod
    def from_corpus_column(cls, task: Task, corpus: Corpus, column: str = "teacher_label", **kw: Any) -> "ReplayTeacher":
        """Recorded labels in the corpus itself (``corpus.extra`` must hold the columns)."""
        if column not in corpus.extra:
            raise CorpusError(f"The corpus has no recorded teacher column {column!r}.")
        rows = {"text": corpus.texts, "teacher_label": corpus.extra[column]}
        for c in CONF_COLS + PROBS_COLS:
            if c in corpus.extra:
                rows[c] = corpus.extra[c]
        t = cls.from_table(task, corpus, rows, key="text", name=f"replay:{Path(corpus.source).parent.name}/{column}", **kw)
        t.recorded = {"column": column}  # how to rebuild it (teachers.teacher_recipe)
        return t

    @classmethod
    def from_file(cls, task: Task, corpus: Corpus, path: str | Path, **kw: Any) -> "ReplayTeacher":
        """A recording file with teacher_label (+ teacher_confidence / teacher_probs) keyed by text, id or row."""
        path = Path(path)
        import pyarrow as pa  # noqa: F401

        from ..corpus import column_names, iter_batches

        names = column_names(path)
        key = "text" if "text" in names else "id" if "id" in names else "row" if "row" in names else None
        if key is None:
            raise CorpusError(f"Replay file {path} needs a 'text', 'id' or 'row' column; it has {names}.")
        rows: dict[str, list] = {c: [] for c in names}
        for b in iter_batches(path):
            for c in names:
                rows[c].extend(b.column(c).to_pylist())
        name = f"replay:{path.parent.name}/{path.name}"
        meta = path.with_suffix(".json")
        if meta.exists():
            try:
                name = "replay:" + str(json.loads(meta.read_text()).get("model", name))
            except json.JSONDecodeError:
                pass
        t = cls.from_table(task, corpus, rows, key=key, name=name, **kw)
        t.recorded = {"file": str(path.resolve())}
        return t


def _first(rows: dict[str, list], cols: Sequence[str], required: bool = False) -> str | None:
    for c in cols:
        if c in rows:
            return c
    if required:
        raise CorpusError(f"The recording has none of the columns {list(cols)}; it has {list(rows)}.")
    return None


def load_replay(task: Task, corpus_path: str | Path, text_col: str = "text", **kw: Any) -> tuple[Corpus, ReplayTeacher]:
    """Convenience: read a corpus that carries teacher columns and build its replay teacher."""
    from ..corpus import column_names

    names = column_names(corpus_path)
    extra = [c for c in LABEL_COLS + CONF_COLS + PROBS_COLS if c in names]
    corpus = read_corpus(corpus_path, text_col=text_col, extra_cols=extra)
    return corpus, ReplayTeacher.from_corpus_column(task, corpus, **kw)
