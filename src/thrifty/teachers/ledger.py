"""The ledger: one SQLite file (WAL) that caches, costs and records every teacher call.

Key = sha256 of (teacher model + decoding parameters, prompt-template hash, label-set
hash, sha256 of the text). Each answer is committed the moment it is paid for, so a
killed process loses nothing and a re-run pays nothing for what it already has.
API keys are never part of an identity and never stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import TeacherError
from ..task import Task, text_sha256
from .base import ResultCallback, TeacherLabel, Teacher, Usage

SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    params TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    label_set_hash TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    raw TEXT,
    label TEXT,
    probs TEXT,
    confidence REAL,
    parse TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s REAL,
    cost_usd REAL,
    created_at REAL,
    run TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT,
    kind TEXT NOT NULL,          -- 'paid' | 'hit' | 'generate'
    key TEXT,
    model TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd REAL,
    at REAL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run);
"""

# Provenance (docs/report.md): the texts behind the hashes, and human corrections kept under
# their own identity beside the teacher's answers (which are never overwritten).
PROVENANCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS texts (
    text_sha256 TEXT PRIMARY KEY,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS human_labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text_sha256 TEXT NOT NULL,
    label_set_hash TEXT NOT NULL,
    label TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    note TEXT,
    created_at REAL
);
CREATE INDEX IF NOT EXISTS human_labels_text ON human_labels(text_sha256);
"""


def ledger_key(identity: dict[str, Any], task: Task, text: str) -> str:
    payload = json.dumps(
        {"teacher": identity, "prompt": task.prompt_hash, "labels": task.label_set_hash, "text": text_sha256(text)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class LedgerStats:
    calls: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    dollars: float
    dollars_saved: float
    generations: int = 0

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Ledger:
    """SQLite-backed cache and cost log. Safe to share between runs (and threads)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._db.executescript(PROVENANCE_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise TeacherError(f"Cannot open ledger {self.path}: {e}. Is it a thrifty ledger file?") from e

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reads ------------------------------------------------------------------------
    def get_many(self, keys: Sequence[str], task: Task) -> dict[str, TeacherLabel]:
        out: dict[str, TeacherLabel] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(uniq), 500):
                chunk = uniq[start : start + 500]
                q = f"SELECT key, raw, label, probs, confidence, parse, prompt_tokens, completion_tokens, latency_s, cost_usd FROM labels WHERE key IN ({','.join('?' * len(chunk))})"
                for row in self._db.execute(q, chunk):
                    out[row[0]] = _row_to_label(row, task)
        return out

    # ---- writes -----------------------------------------------------------------------
    def put(self, key: str, identity: dict[str, Any], task: Task, text: str, lab: TeacherLabel, run: str = "") -> None:
        """Store one paid answer and commit at once."""
        u = lab.usage
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO labels VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    key,
                    str(identity.get("model", "")),
                    json.dumps(identity, sort_keys=True),
                    task.prompt_hash,
                    task.label_set_hash,
                    text_sha256(text),
                    lab.raw,
                    lab.label,
                    json.dumps([round(float(x), 6) for x in lab.probs]) if lab.probs is not None else None,
                    lab.confidence,
                    lab.parse,
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.latency_s,
                    u.cost_usd,
                    now,
                    run,
                ),
            )
            self._db.execute("INSERT OR IGNORE INTO texts VALUES (?,?)", (text_sha256(text), text))
            self._db.execute(
                "INSERT INTO events (run, kind, key, model, prompt_tokens, completion_tokens, cost_usd, at) VALUES (?,?,?,?,?,?,?,?)",
                (run, "paid", key, str(identity.get("model", "")), u.prompt_tokens, u.completion_tokens, u.cost_usd, now),
            )
            self._db.execute("COMMIT")

    def record_event(self, kind: str, run: str, model: str, usage: Usage, key: str | None = None) -> None:
        """Log a cache hit, or a non-label call such as a generation (PGKD), with its cost."""
        with self._lock:
            self._db.execute(
                "INSERT INTO events (run, kind, key, model, prompt_tokens, completion_tokens, cost_usd, at) VALUES (?,?,?,?,?,?,?,?)",
                (run, kind, key, model, usage.prompt_tokens, usage.completion_tokens, usage.cost_usd, time.time()),
            )

    def record_hits(self, run: str, model: str, hits: Sequence[tuple[str, TeacherLabel]]) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO events (run, kind, key, model, prompt_tokens, completion_tokens, cost_usd, at) VALUES (?,?,?,?,?,?,?,?)",
                [(run, "hit", k, model, lab.usage.prompt_tokens, lab.usage.completion_tokens, lab.usage.cost_usd, now) for k, lab in hits],
            )
            self._db.execute("COMMIT")

    # ---- reporting --------------------------------------------------------------------
    def stats(self, run: str | None = None) -> LedgerStats:
        where, args = ("WHERE run = ?", (run,)) if run is not None else ("", ())
        with self._lock:
            rows = dict(
                (k, (n, pt, ct, c))
                for k, n, pt, ct, c in self._db.execute(
                    f"SELECT kind, COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), COALESCE(SUM(cost_usd),0) FROM events {where} GROUP BY kind",
                    args,
                )
            )
        paid = rows.get("paid", (0, 0, 0, 0.0))
        gen = rows.get("generate", (0, 0, 0, 0.0))
        hit = rows.get("hit", (0, 0, 0, 0.0))
        return LedgerStats(
            calls=int(paid[0]),
            cache_hits=int(hit[0]),
            prompt_tokens=int(paid[1] + gen[1]),
            completion_tokens=int(paid[2] + gen[2]),
            dollars=float(paid[3] + gen[3]),
            dollars_saved=float(hit[3]),
            generations=int(gen[0]),
        )

    def models(self) -> list[tuple[str, int, float]]:
        with self._lock:
            return [
                (m, int(n), float(c))
                for m, n, c in self._db.execute(
                    "SELECT model, COUNT(*), COALESCE(SUM(cost_usd),0) FROM events WHERE kind != 'hit' GROUP BY model ORDER BY 2 DESC"
                )
            ]

    def n_labels(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    # ---- provenance: texts and human corrections ------------------------------------------
    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """Read-only rows for reports and exports (``SELECT`` only)."""
        if not sql.lstrip().upper().startswith("SELECT"):
            raise TeacherError("Ledger.query runs SELECT statements only.")
        with self._lock:
            return list(self._db.execute(sql, tuple(args)))

    def add_human_labels(self, rows: Sequence[tuple[str, str]], task: Task, reviewer: str, note: str = "") -> int:
        """Store human labels as ``(text, label)`` pairs under ``reviewer``; the teacher's answers stay."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO texts VALUES (?,?)", [(text_sha256(t), t) for t, _ in rows])
            self._db.executemany(
                "INSERT INTO human_labels (text_sha256, label_set_hash, label, reviewer, note, created_at) VALUES (?,?,?,?,?,?)",
                [(text_sha256(t), task.label_set_hash, lab, reviewer, note, now) for t, lab in rows],
            )
            self._db.execute("COMMIT")
        return len(rows)

    def human_labels(self, shas: Sequence[str], task: Task) -> dict[str, tuple[str, str]]:
        """The latest human ``(label, reviewer)`` per text hash, for this label set."""
        out: dict[str, tuple[str, str]] = {}
        uniq = list(dict.fromkeys(shas))
        with self._lock:
            if self._db.execute("SELECT 1 FROM human_labels LIMIT 1").fetchone() is None:
                return out
            for start in range(0, len(uniq), 500):
                chunk = uniq[start : start + 500]
                q = (f"SELECT text_sha256, label, reviewer FROM human_labels WHERE label_set_hash = ? AND "
                     f"text_sha256 IN ({','.join('?' * len(chunk))}) ORDER BY id")
                for sha, lab, who in self._db.execute(q, [task.label_set_hash, *chunk]):
                    out[sha] = (lab, who)
        return out


def human_label(task: Task, label: str, reviewer: str, teacher: TeacherLabel | None = None) -> TeacherLabel:
    """A human correction as an answer: one-hot, confidence 1, ``parse="human"``."""
    p = np.zeros(task.n_labels)
    p[task.index(label)] = 1.0
    usage = teacher.usage if teacher is not None else Usage()
    return TeacherLabel(label, p, 1.0, raw=f"human:{reviewer}", usage=usage, cached=True, parse="human")


def _row_to_label(row: tuple, task: Task) -> TeacherLabel:
    _, raw, label, probs, conf, parse, pt, ct, lat, cost = row
    p = np.asarray(json.loads(probs), dtype=np.float64) if probs else None
    if p is not None and len(p) != task.n_labels:
        p = None
    return TeacherLabel(
        label=label,
        probs=p,
        confidence=conf,
        raw=raw or "",
        usage=Usage(int(pt or 0), int(ct or 0), float(lat or 0.0), float(cost or 0.0)),
        cached=True,
        parse=parse or "",
    )


class CachedTeacher:
    """Wraps a teacher with the ledger: cache hits cost nothing, misses are committed as they arrive."""

    def __init__(self, teacher: Teacher, ledger: Ledger, run: str = ""):
        self.teacher = teacher
        self.ledger = ledger
        self.run = run
        self.task = teacher.task
        self.requests = 0  # texts actually sent to the teacher by this object
        self.hits = 0

    def identity(self) -> dict[str, Any]:
        return self.teacher.identity()

    def keys(self, texts: Sequence[str]) -> list[str]:
        ident = self.teacher.identity()
        return [ledger_key(ident, self.task, t) for t in texts]

    def lookup(self, texts: Sequence[str]) -> dict[int, TeacherLabel]:
        """Answers already in the ledger for these texts, by position (no cost, no request)."""
        keys = self.keys(texts)
        got = self.ledger.get_many(keys, self.task)
        return {**{i: got[k] for i, k in enumerate(keys) if k in got}, **self._human(texts)}

    def _human(self, texts: Sequence[str]) -> dict[int, TeacherLabel]:
        """Human corrections (``thrifty import-labels``) that replace the teacher's answers, by position;
        the teacher's cost, if it was paid, stays with the answer."""
        shas = [text_sha256(t) for t in texts]
        human = self.ledger.human_labels(shas, self.task)
        if not human:
            return {}
        pos = [i for i, s in enumerate(shas) if s in human]
        keys = self.keys([texts[i] for i in pos])
        paid = self.ledger.get_many(keys, self.task)
        return {i: human_label(self.task, *human[shas[i]], paid.get(k)) for i, k in zip(pos, keys)}

    def _label_with_human(self, texts: Sequence[str], human: dict[int, TeacherLabel],
                          on_result: ResultCallback | None) -> list[TeacherLabel]:
        """Deliver the human labels; ask (cache, then teacher) only for the other texts."""
        rest = [i for i in range(len(texts)) if i not in human]
        for i, lab in human.items():
            if on_result:
                on_result(i, lab)
        cb = (lambda j, lab: on_result(rest[j], lab)) if on_result else None
        got = dict(zip(rest, self.label([texts[i] for i in rest], on_result=cb))) if rest else {}
        return [human[i] if i in human else got[i] for i in range(len(texts))]

    def label(self, texts: Sequence[str], on_result: ResultCallback | None = None) -> list[TeacherLabel]:
        human = self._human(texts)
        if human:  # a reviewer's labels are used instead of the teacher's, and never paid for
            return self._label_with_human(texts, human, on_result)
        ident = self.teacher.identity()
        model = str(ident.get("model", ""))
        keys = [ledger_key(ident, self.task, t) for t in texts]
        cached = self.ledger.get_many(keys, self.task)
        results: list[TeacherLabel | None] = [None] * len(texts)
        hits = []
        for i, k in enumerate(keys):
            if k in cached:
                results[i] = cached[k]
                hits.append((k, cached[k]))
                if on_result:
                    on_result(i, cached[k])
        if hits:
            self.ledger.record_hits(self.run, model, hits)
            self.hits += len(hits)
        # one request per distinct missing key
        miss_pos: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            if results[i] is None:
                miss_pos.setdefault(k, []).append(i)
        if not miss_pos:
            return results  # type: ignore[return-value]
        miss_keys = list(miss_pos)
        miss_texts = [texts[miss_pos[k][0]] for k in miss_keys]

        def commit(j: int, lab: TeacherLabel) -> None:
            k = miss_keys[j]
            self.ledger.put(k, ident, self.task, miss_texts[j], lab, run=self.run)
            self.requests += 1
            for i in miss_pos[k]:
                results[i] = lab
                if on_result:
                    on_result(i, lab)

        self.teacher.label(miss_texts, on_result=commit)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise TeacherError(
                f"The teacher returned no answer for {len(missing)} of {len(texts)} texts; "
                f"the {len(texts) - len(missing)} answers received are saved in {self.ledger.path}."
            )
        return results  # type: ignore[return-value]
