"""A read-only view of a finished (or interrupted) run directory, for reports, exports and audits.

It reads what ``thrifty distill`` writes (``config.json``, ``state.json``, ``history.csv``,
``model/``, the ledger) and the run's corpus, and says for every paid answer *why* it was
bought: ``validation``, ``seed``, ``selected`` (with its round), ``synthesis`` (PGKD's
re-labels) or ``cascade`` (escalations by ``thrifty predict --cascade``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..corpus import Corpus, read_corpus
from ..errors import ThriftyError
from ..run import require_run_dir
from ..task import Task
from ..teachers.ledger import Ledger, ledger_key

PURPOSES = ("validation", "seed", "selected", "synthesis", "cascade", "unknown")


@dataclass
class PaidAnswer:
    """One teacher answer the run paid for (or reused from a shared ledger), with its provenance."""

    key: str
    text_sha256: str
    text: str | None
    id: str | None
    row: int | None
    label: str | None
    probs: list[float] | None
    confidence: float | None
    raw: str | None
    parse: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    model: str
    round: int | None
    purpose: str
    human_label: str | None = None
    reviewer: str | None = None


@dataclass
class RunView:
    """Everything a report needs from a run directory."""

    run_dir: Path
    config: dict[str, Any]
    task: Task
    teacher: dict[str, Any]
    meta: dict[str, Any]
    history: list[dict[str, Any]]
    history_csv: list[dict[str, str]]
    state: dict[str, Any]
    model_card: dict[str, Any]
    ledger_path: Path
    corpus: Corpus | None = None
    _answers: list[PaidAnswer] | None = field(default=None, repr=False)

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id", ""))

    @property
    def val_idx(self) -> np.ndarray:
        return np.asarray(self.state.get("val_idx", []), dtype=int)

    @property
    def train_idx(self) -> np.ndarray:
        return np.asarray(self.state.get("train_idx", []), dtype=int)

    def ledger(self) -> Ledger:
        if not self.ledger_path.exists():
            raise ThriftyError(f"The run's ledger {self.ledger_path} is missing; was it moved?")
        return Ledger(self.ledger_path)

    def rounds_of_train(self) -> np.ndarray:
        """The round in which each training label (``train_idx`` order) was bought; 0 = seed."""
        rounds = np.zeros(len(self.train_idx), dtype=int)
        start = 0
        for row in self.history:
            n = int(row.get("labels", 0))
            rounds[start:n] = int(row.get("round", 0))
            start = max(start, n)
        if start < len(rounds):  # bought after the last evaluated round (interrupted run)
            rounds[start:] = int(self.state.get("round", 0))
        return rounds

    def answers(self) -> list[PaidAnswer]:
        """Every answer this run used or paid for, with its purpose (cached after the first call)."""
        if self._answers is None:
            with self.ledger() as led:
                self._answers = _collect_answers(self, led)
        return self._answers


def open_run(run_dir: str | Path, corpus: Corpus | None = None, ledger: str | Path | None = None) -> RunView:
    """Read a run directory. ``corpus`` defaults to the file recorded by ``thrifty distill``, ``ledger``
    to the one it recorded, else ``RUN/ledger.sqlite`` (give both for a Python run made with ``ledger=``)."""
    d = Path(run_dir)
    cfg_path = d / "config.json"
    require_run_dir(d)
    saved = json.loads(cfg_path.read_text(encoding="utf-8"))
    state_path = d / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
    hist_csv: list[dict[str, str]] = []
    if (d / "history.csv").exists():
        with open(d / "history.csv", newline="", encoding="utf-8") as f:
            hist_csv = list(csv.DictReader(f))
    card_path = d / "model" / "model_card.json"
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.exists() else {}
    meta = dict(saved.get("meta") or {})
    meta.setdefault("run_id", saved.get("run_id", ""))
    if saved.get("source"):
        meta["source"] = saved["source"]
    # where the corpus and ledger are: config.json's "source", or "meta.cli" in older run directories
    src = meta.get("source") or meta.get("cli") or {}
    ledger_path = Path(ledger) if ledger is not None else Path(src["ledger"]) if src.get("ledger") else d / "ledger.sqlite"
    view = RunView(
        run_dir=d, config=saved.get("config", {}), task=Task.from_dict(saved["task"]),
        teacher=saved.get("teacher", {}), meta=meta, history=list(state.get("history", [])),
        history_csv=hist_csv, state=state, model_card=card, ledger_path=ledger_path, corpus=corpus,
    )
    if view.corpus is None and src.get("corpus"):
        path = Path(src["corpus"])
        if path.exists():
            view.corpus = read_corpus(path, text_col=src.get("text_col") or "text", id_col=src.get("id_col"),
                                      gold_col=src.get("gold_col"))
    if view.corpus is not None and state.get("corpus_sha256") not in (None, view.corpus.fingerprint()):
        raise ThriftyError(f"The corpus given for {d} is not the one the run was made on (its fingerprint differs).")
    return view


def _collect_answers(view: RunView, led: Ledger) -> list[PaidAnswer]:
    """Join the run's pool rows, the ledger's answers and its event log into one row per answer."""
    task, ident = view.task, view.teacher
    # pool rows with a known purpose (needs the corpus: state.json stores positions)
    slots: dict[str, tuple[int | None, int | None, str]] = {}  # key -> (pool row, round, purpose)
    texts: dict[str, str] = {}
    if view.corpus is not None:
        c = view.corpus
        for i in view.val_idx:
            slots[ledger_key(ident, task, c.texts[i])] = (int(i), 0, "validation")
        for i, r in zip(view.train_idx, view.rounds_of_train()):
            k = ledger_key(ident, task, c.texts[i])
            slots.setdefault(k, (int(i), int(r), "seed" if r == 0 else "selected"))
        for k, (i, _, _) in slots.items():
            texts[k] = c.texts[i]  # type: ignore[index]
    run = view.run_id
    # every key this run touched (paid or cache hit), and escalations by predict --cascade
    touched: dict[str, str] = {}
    for key, r in led.query("SELECT DISTINCT key, run FROM events WHERE key IS NOT NULL AND run IN (?, ?)",
                            (run, f"{run}:predict")):
        # without the corpus the pool rows cannot be told apart: their purpose is unknown
        touched.setdefault(key, "cascade" if r.endswith(":predict") else "synthesis" if view.corpus is not None else "unknown")
    keys = list(dict.fromkeys([*slots, *touched]))
    rows: dict[str, tuple] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        q = ("SELECT l.key, l.text_sha256, t.text, l.label, l.probs, l.confidence, l.raw, l.parse, l.prompt_tokens, "
             "l.completion_tokens, l.cost_usd, l.model FROM labels l LEFT JOIN texts t ON t.text_sha256 = l.text_sha256 "
             f"WHERE l.key IN ({','.join('?' * len(chunk))})")
        for r in led.query(q, chunk):
            rows[r[0]] = r
    human = led.human_labels([rows[k][1] for k in keys if k in rows], task)
    ids = view.corpus.ids if view.corpus is not None else None
    out = []
    for k in keys:
        if k not in rows:
            continue  # listed in state but missing from the ledger: reported by `distill --resume`
        _, sha, text, label, probs, conf, raw, parse, pt, ct, cost, model = rows[k]
        pos, rnd, purpose = slots.get(k, (None, None, touched.get(k, "synthesis")))
        hl = human.get(sha)
        out.append(PaidAnswer(
            key=k, text_sha256=sha, text=texts.get(k, text), id=str(ids[pos]) if ids is not None and pos is not None else None,
            row=pos, label=label, probs=json.loads(probs) if probs else None, confidence=conf, raw=raw, parse=parse,
            prompt_tokens=int(pt or 0), completion_tokens=int(ct or 0), cost_usd=float(cost or 0.0), model=model,
            round=rnd, purpose=purpose, human_label=hl[0] if hl else None, reviewer=hl[1] if hl else None,
        ))
    return out


def spend_by_kind(view: RunView) -> dict[str, dict[str, float]]:
    """Answers, tokens and dollars per purpose; PGKD's generation calls count as ``synthesis``."""
    out = {p: {"answers": 0, "tokens": 0, "dollars": 0.0} for p in PURPOSES}
    for a in view.answers():
        s = out[a.purpose]
        s["answers"] += 1
        s["tokens"] += a.prompt_tokens + a.completion_tokens
        s["dollars"] += a.cost_usd
    with view.ledger() as led:
        for pt, ct, cost in led.query("SELECT prompt_tokens, completion_tokens, cost_usd FROM events "
                                      "WHERE run = ? AND kind = 'generate'", (view.run_id,)):
            out["synthesis"]["tokens"] += int(pt or 0) + int(ct or 0)
            out["synthesis"]["dollars"] += float(cost or 0.0)
    return out

