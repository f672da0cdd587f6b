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
    run TEXT,
    cached_tokens INTEGER DEFAULT 0
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
    at REAL,
    cached_tokens INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_run ON events(run);
CREATE TABLE IF NOT EXISTS batches (
    file_id TEXT PRIMARY KEY,    -- the uploaded Batch API input file
    batch_id TEXT,               -- set the moment the batch is created
    model TEXT NOT NULL,
    lines TEXT NOT NULL,         -- JSON {custom_id: ledger key}
    status TEXT NOT NULL,        -- uploaded | submitted | collected
    created_at REAL,
    run TEXT
);
"""
# columns added after the first release: (table, column, declaration), added to older ledgers on open
MIGRATIONS = (("labels", "cached_tokens", "INTEGER DEFAULT 0"), ("events", "cached_tokens", "INTEGER DEFAULT 0"))
_EVENT_INSERT = ("INSERT INTO events (run, kind, key, model, prompt_tokens, completion_tokens, cost_usd, at, cached_tokens) "
                 "VALUES (?,?,?,?,?,?,?,?,?)")


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
    cached_tokens: int = 0  # prompt tokens billed at the provider's cached-input rate

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
            for table, col, decl in MIGRATIONS:
                have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
                if col not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {col} {decl}")
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
                q = f"SELECT key, raw, label, probs, confidence, parse, prompt_tokens, completion_tokens, latency_s, cost_usd, cached_tokens FROM labels WHERE key IN ({','.join('?' * len(chunk))})"
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
                "INSERT OR REPLACE INTO labels (key, model, params, prompt_hash, label_set_hash, text_sha256, raw, label, "
                "probs, confidence, parse, prompt_tokens, completion_tokens, latency_s, cost_usd, created_at, run, "
                "cached_tokens) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                    u.cached_tokens,
                ),
            )
            self._db.execute(
                _EVENT_INSERT,
                (run, "paid", key, str(identity.get("model", "")), u.prompt_tokens, u.completion_tokens, u.cost_usd, now,
                 u.cached_tokens),
            )
            self._db.execute("COMMIT")

    def record_event(self, kind: str, run: str, model: str, usage: Usage, key: str | None = None) -> None:
        """Log a cache hit, or a non-label call such as a generation (PGKD), with its cost."""
        with self._lock:
            self._db.execute(
                _EVENT_INSERT,
                (run, kind, key, model, usage.prompt_tokens, usage.completion_tokens, usage.cost_usd, time.time(),
                 usage.cached_tokens),
            )

    def record_hits(self, run: str, model: str, hits: Sequence[tuple[str, TeacherLabel]]) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                _EVENT_INSERT,
                [(run, "hit", k, model, lab.usage.prompt_tokens, lab.usage.completion_tokens, lab.usage.cost_usd, now,
                  lab.usage.cached_tokens) for k, lab in hits],
            )
            self._db.execute("COMMIT")

    # ---- reporting --------------------------------------------------------------------
    def stats(self, run: str | None = None) -> LedgerStats:
        where, args = ("WHERE run = ?", (run,)) if run is not None else ("", ())
        with self._lock:
            rows = dict(
                (k, (n, pt, ct, c, cc))
                for k, n, pt, ct, c, cc in self._db.execute(
                    f"SELECT kind, COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), COALESCE(SUM(cost_usd),0), COALESCE(SUM(cached_tokens),0) FROM events {where} GROUP BY kind",
                    args,
                )
            )
        paid = rows.get("paid", (0, 0, 0, 0.0, 0))
        gen = rows.get("generate", (0, 0, 0, 0.0, 0))
        hit = rows.get("hit", (0, 0, 0, 0.0, 0))
        return LedgerStats(
            calls=int(paid[0]),
            cache_hits=int(hit[0]),
            prompt_tokens=int(paid[1] + gen[1]),
            completion_tokens=int(paid[2] + gen[2]),
            dollars=float(paid[3] + gen[3]),
            dollars_saved=float(hit[3]),
            generations=int(gen[0]),
            cached_tokens=int(paid[4] + gen[4]),
        )

    def models(self) -> list[tuple[str, int, float]]:
        with self._lock:
            return [
                (m, int(n), float(c))
                for m, n, c in self._db.execute(
                    "SELECT model, COUNT(*), COALESCE(SUM(cost_usd),0) FROM events WHERE kind != 'hit' GROUP BY model ORDER BY 2 DESC"
                )
            ]

    # ---- Batch API jobs: recorded before and after creation, so a killed run polls, never resubmits ----
    def batch_uploaded(self, file_id: str, model: str, lines: dict[str, str], run: str = "") -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO batches VALUES (?,?,?,?,?,?,?)",
                             (file_id, None, model, json.dumps(lines), "uploaded", time.time(), run))

    def batch_submitted(self, file_id: str, batch_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE batches SET batch_id = ?, status = 'submitted' WHERE file_id = ?", (batch_id, file_id))

    def batch_collected(self, file_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE batches SET status = 'collected' WHERE file_id = ?", (file_id,))

    def open_batches(self, model: str) -> list[dict[str, Any]]:
        """Batches of ``model`` not yet collected, oldest first: ``{file_id, batch_id, lines}``."""
        with self._lock:
            rows = self._db.execute("SELECT file_id, batch_id, lines FROM batches WHERE model = ? AND status != 'collected' "
                                    "ORDER BY created_at", (model,)).fetchall()
        return [{"file_id": f, "batch_id": b, "lines": json.loads(ln)} for f, b, ln in rows]

    def has_keys(self, keys: Sequence[str]) -> set[str]:
        """The subset of ``keys`` with an answer stored."""
        out: set[str] = set()
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(uniq), 500):
                chunk = uniq[start : start + 500]
                out.update(r[0] for r in self._db.execute(
                    f"SELECT key FROM labels WHERE key IN ({','.join('?' * len(chunk))})", chunk))
        return out

    def n_labels(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])


def _row_to_label(row: tuple, task: Task) -> TeacherLabel:
    _, raw, label, probs, conf, parse, pt, ct, lat, cost, cached = row
    p = np.asarray(json.loads(probs), dtype=np.float64) if probs else None
    if p is not None and len(p) != task.n_labels:
        p = None
    return TeacherLabel(
        label=label,
        probs=p,
        confidence=conf,
        raw=raw or "",
        usage=Usage(int(pt or 0), int(ct or 0), float(lat or 0.0), float(cost or 0.0), int(cached or 0)),
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
        return {i: got[k] for i, k in enumerate(keys) if k in got}

    def label(self, texts: Sequence[str], on_result: ResultCallback | None = None) -> list[TeacherLabel]:
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

        resumable = getattr(self.teacher, "label_resumable", None)  # e.g. the Batch API: jobs live in the ledger
        if resumable is not None:
            resumable(miss_texts, miss_keys, self.ledger, self.run, on_result=commit)
        else:
            self.teacher.label(miss_texts, on_result=commit)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise TeacherError(
                f"The teacher returned no answer for {len(missing)} of {len(texts)} texts; "
                f"the {len(texts) - len(missing)} answers received are saved in {self.ledger.path}."
            )
        return results  # type: ignore[return-value]
