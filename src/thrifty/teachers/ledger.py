"""The ledger: one SQLite file (WAL) that caches, costs and records every teacher call.

Key = sha256 of (teacher model + decoding parameters, prompt-template hash, label-set
hash, sha256 of the text). Each answer is committed the moment it is paid for, so a
killed process loses nothing and a re-run pays nothing for what it already has.
API keys are never part of an identity and never stored.

Several processes may share one ledger: before paying for a text a process claims its key
(a ``claims`` row with an owner and an expiry that the owner keeps extending while it
works). Another process that needs the same text waits for the answer instead of paying
again; a crashed owner's claims lapse (at once when the owner was a process on this host
that is gone, else when the expiry passes). Texts the teacher refuses are recorded in
``rejections``; a ``sent`` event is committed before every request and a ``refused`` event
after every error reply, so ``stats`` can count requests that may have been billed
although no answer was recorded (a process killed with requests in flight).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import LedgerError, TeacherError
from ..task import Task, text_sha256
from .base import ResultCallback, TeacherLabel, Teacher, TextsRejected, Usage

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
    kind TEXT NOT NULL,          -- 'paid' | 'hit' | 'generate' | 'sent' | 'refused' | 'superseded' | 'rejected'
    key TEXT,
    model TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd REAL,
    at REAL,
    cached_tokens INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_run ON events(run);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,         -- host:pid:random of the process paying for it
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejections (
    key TEXT PRIMARY KEY,
    model TEXT,
    text_sha256 TEXT,
    kind TEXT NOT NULL,          -- 'rejected' (per-text 4xx: final) | 'gave_up' (retries spent: a new run may retry)
    error TEXT,
    created_at REAL,
    run TEXT
);
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

CLAIM_TTL_S = 30.0  # a claim lapses this long after its owner last extended it
HOST = socket.gethostname()

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


OPEN_RETRY_S = 30.0  # how long opening waits out other processes opening or migrating the same ledger


def _connect(path: Path) -> sqlite3.Connection:
    """Open (and create or migrate) a ledger, waiting out other processes doing the same.

    Switching to WAL and creating tables take locks for which SQLite may answer "database is
    locked" at once, without waiting its busy timeout, when two processes open one new ledger
    together; two migrations may also race to add one column. Both are retried until
    ``OPEN_RETRY_S``; any other error (not a SQLite file, a corrupt one) is raised at once.
    """
    deadline = time.monotonic() + OPEN_RETRY_S
    while True:
        db = sqlite3.connect(str(path), check_same_thread=False, timeout=OPEN_RETRY_S, isolation_level=None)
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            for table, col, decl in MIGRATIONS:
                have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                if col not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {col} {decl}")
            db.executescript(PROVENANCE_SCHEMA)
            return db
        except sqlite3.OperationalError as e:
            db.close()
            transient = "locked" in str(e) or "busy" in str(e) or "duplicate column" in str(e)
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(0.02 + 0.08 * random.random())
        except BaseException:
            db.close()
            raise


@dataclass
class LedgerStats:
    calls: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    dollars: float
    dollars_saved: float
    generations: int = 0
    sent: int = 0  # requests sent (teachers that report them)
    possibly_billed: int = 0  # sent, no answer and no error reply recorded: the provider may have billed them
    rejected: int = 0  # texts set aside because the teacher refused them
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
            self._db = _connect(self.path)
        except sqlite3.DatabaseError as e:
            raise LedgerError(f"Cannot open ledger {self.path}: {e}. Is it a thrifty ledger file?") from e

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reads ------------------------------------------------------------------------
    def get_many(self, keys: Sequence[str], task: Task) -> dict[str, TeacherLabel]:
        """Stored answers by key, plus final refusals (a ``rejected`` label holding the error)."""
        out: dict[str, TeacherLabel] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(uniq), 500):
                chunk = uniq[start : start + 500]
                marks = ",".join("?" * len(chunk))
                q = f"SELECT key, raw, label, probs, confidence, parse, prompt_tokens, completion_tokens, latency_s, cost_usd, cached_tokens FROM labels WHERE key IN ({marks})"
                for row in self._db.execute(q, chunk):
                    out[row[0]] = _row_to_label(row, task)
                q = f"SELECT key, error FROM rejections WHERE kind = 'rejected' AND key IN ({marks})"
                for key, error in self._db.execute(q, chunk):
                    out.setdefault(key, rejected_label(error or "", cached=True))
        return out

    def rejections(self, run: str | None = None) -> list[tuple[str, str, str, str]]:
        """``(text sha256, model, kind, error)`` of the texts set aside (all runs, or one)."""
        where, args = ("WHERE run = ?", (run,)) if run is not None else ("", ())
        with self._lock:
            return [tuple(r) for r in self._db.execute(  # type: ignore[misc]
                f"SELECT text_sha256, model, kind, error FROM rejections {where} ORDER BY created_at", args)]

    # ---- claims: one payer per text across processes ---------------------------------
    def claim(self, keys: Sequence[str], owner: str, ttl: float = CLAIM_TTL_S) -> tuple[list[str], list[str]]:
        """Claim the keys that have no answer yet. Returns ``(claimed by owner, held by others)``;
        keys missing from both were answered (or finally refused) meanwhile."""
        uniq = list(dict.fromkeys(keys))
        now = time.time()
        claimed: list[str] = []
        held: list[str] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(uniq), 500):
                    chunk = uniq[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    settled = {r[0] for r in self._db.execute(f"SELECT key FROM labels WHERE key IN ({marks})", chunk)}
                    settled |= {r[0] for r in self._db.execute(
                        f"SELECT key FROM rejections WHERE kind = 'rejected' AND key IN ({marks})", chunk)}
                    current = {k: (o, e) for k, o, e in self._db.execute(
                        f"SELECT key, owner, expires FROM claims WHERE key IN ({marks})", chunk)}
                    for k in chunk:
                        if k in settled:
                            continue
                        c = current.get(k)
                        if c is None or c[0] == owner or c[1] < now or not _owner_alive(c[0]):
                            claimed.append(k)
                        else:
                            held.append(k)
                self._db.executemany("INSERT OR REPLACE INTO claims VALUES (?,?,?)", [(k, owner, now + ttl) for k in claimed])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return claimed, held

    def extend_claims(self, owner: str, ttl: float = CLAIM_TTL_S) -> None:
        with self._lock:
            self._db.execute("UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + ttl, owner))

    def release(self, keys: Sequence[str], owner: str) -> None:
        """Drop the owner's claims on these keys (answered or not)."""
        with self._lock:
            self._db.executemany("DELETE FROM claims WHERE key = ? AND owner = ?", [(k, owner) for k in keys])

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
            self._db.execute("INSERT OR IGNORE INTO texts VALUES (?,?)", (text_sha256(text), text))
            self._db.execute(
                _EVENT_INSERT,
                (run, "paid", key, str(identity.get("model", "")), u.prompt_tokens, u.completion_tokens, u.cost_usd, now,
                 u.cached_tokens),
            )
            self._db.execute("DELETE FROM claims WHERE key = ?", (key,))
            self._db.execute("COMMIT")

    def put_rejection(self, key: str, model: str, text: str, kind: str, error: str, run: str = "") -> None:
        """Record a text the teacher refused (``kind``: 'rejected' = final, 'gave_up' = retries spent)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO rejections VALUES (?,?,?,?,?,?,?)",
                             (key, model, text_sha256(text), kind, error, now, run))
            self._db.execute("INSERT INTO events (run, kind, key, model, at) VALUES (?,?,?,?,?)",
                             (run, "rejected", key, model, now))
            self._db.execute("DELETE FROM claims WHERE key = ?", (key,))
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
            # per text: requests sent minus answers, error replies and superseded answers (billed, asked again,
            # their cost added to the paid answer) = requests that may have been billed with no answer recorded
            # (in flight when a process was killed, or a 200 with an unusable body)
            unknown = self._db.execute(
                "SELECT COALESCE(SUM(MAX(0, s - p - r)), 0) FROM (SELECT SUM(kind = 'sent') s, SUM(kind = 'paid') p,"
                f" SUM(kind IN ('refused', 'superseded')) r FROM events {where + (' AND' if where else 'WHERE')} key IS NOT NULL GROUP BY key)",
                args,
            ).fetchone()[0]
            rejected = self._db.execute(f"SELECT COUNT(*) FROM rejections {where}", args).fetchone()[0]
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
            sent=int(rows.get("sent", (0,))[0]),
            possibly_billed=int(unknown),
            rejected=int(rejected),
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

    # ---- provenance: texts and human corrections ------------------------------------------
    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """Read-only rows for reports and exports (``SELECT`` only)."""
        if not sql.lstrip().upper().startswith("SELECT"):
            raise LedgerError("Ledger.query runs SELECT statements only.")
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


def _owner_alive(owner: str) -> bool:
    """False only when the owner was a process on this host that no longer exists."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != HOST or not parts[1].isdigit():
        return True
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def rejected_label(error: str, cached: bool = False) -> TeacherLabel:
    """The placeholder answer for a text the teacher refused (``raw`` holds the error)."""
    return TeacherLabel(None, None, None, raw=error, cached=cached, parse="rejected")


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
    """Wraps a teacher with the ledger: cache hits cost nothing, misses are committed as they arrive.

    Each missing text is claimed in the ledger before it is sent, so processes sharing the
    ledger never pay for one text twice: a text another live process is paying for is
    waited for (polling every ``poll_s``) and then read from the ledger.
    """

    def __init__(self, teacher: Teacher, ledger: Ledger, run: str = "", poll_s: float = 0.2):
        self.teacher = teacher
        self.ledger = ledger
        self.run = run
        self.task = teacher.task
        self.poll_s = poll_s
        self.owner = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.requests = 0  # texts actually sent to the teacher by this object
        self.hits = 0
        self.rejected = 0  # texts the teacher refused (set aside)
        try:
            self._reports_requests = "on_request" in inspect.signature(teacher.label).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            self._reports_requests = False

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
        """Labels in input order; a refused text gets a ``rejected`` label (error in ``raw``)."""
        human = self._human(texts)
        if human:  # a reviewer's labels are used instead of the teacher's, and never paid for
            return self._label_with_human(texts, human, on_result)
        ident = self.teacher.identity()
        model = str(ident.get("model", ""))
        keys = [ledger_key(ident, self.task, t) for t in texts]
        results: list[TeacherLabel | None] = [None] * len(texts)
        pos: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            pos.setdefault(k, []).append(i)

        def deliver(k: str, lab: TeacherLabel) -> None:
            for i in pos[k]:
                results[i] = lab
                if on_result:
                    on_result(i, lab)

        def from_ledger(want: Sequence[str]) -> None:
            got = self.ledger.get_many(want, self.task)
            hits = [(k, got[k]) for k in want if k in got for _ in pos[k]]  # one hit per position
            if hits:
                self.ledger.record_hits(self.run, model, [(k, lab) for k, lab in hits if not lab.rejected])
                self.hits += len(hits)
            for k in dict.fromkeys(k for k, _ in hits):
                deliver(k, got[k])

        from_ledger(list(pos))
        pending = [k for k in pos if results[pos[k][0]] is None]
        wait = self.poll_s
        while pending:
            claimed, held = self.ledger.claim(pending, self.owner)
            settled = [k for k in pending if k not in set(claimed) | set(held)]
            if settled:  # answered by another process since we looked
                from_ledger(settled)
            if claimed:
                self._pay(claimed, [texts[pos[k][0]] for k in claimed], ident, model, deliver)
            pending = [k for k in held if results[pos[k][0]] is None]
            if pending:  # another live process is paying for these: wait for its answers
                time.sleep(wait)
                wait = min(2.0, wait * 1.5)
                from_ledger(pending)
                pending = [k for k in pending if results[pos[k][0]] is None]
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # pragma: no cover - every path above delivers or raises
            raise TeacherError(f"The teacher returned no answer for {len(missing)} of {len(texts)} texts.")
        return results  # type: ignore[return-value]

    def _pay(self, keys: list[str], texts: list[str], ident: dict[str, Any], model: str,
             deliver: Callable[[str, TeacherLabel], None]) -> None:
        """Ask the teacher for the claimed texts, committing each answer as it arrives."""

        def commit(j: int, lab: TeacherLabel) -> None:
            self.ledger.put(keys[j], ident, self.task, texts[j], lab, run=self.run)
            self.requests += 1
            deliver(keys[j], lab)

        def on_request(j: int, kind: str) -> None:
            self.ledger.record_event(kind, self.run, model, Usage(), key=keys[j])

        kw = {"on_request": on_request} if self._reports_requests else {}
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(stop,), name="thrifty-claims", daemon=True)
        beat.start()
        resumable = getattr(self.teacher, "label_resumable", None)  # the Batch API: its jobs live in the ledger
        try:
            if resumable is not None:
                resumable(texts, keys, self.ledger, self.run, on_result=commit, **kw)
            else:
                self.teacher.label(texts, on_result=commit, **kw)
        except TextsRejected as e:
            for j, (kind, error) in e.rejected.items():
                self.ledger.put_rejection(keys[j], model, texts[j], kind, error, run=self.run)
                self.rejected += 1
                deliver(keys[j], rejected_label(error))
            if e.others:
                raise TeacherError(f"{e.others} The answers received are saved in {self.ledger.path}.") from e
        except TeacherError as e:
            raise TeacherError(f"{e} The answers received are saved in {self.ledger.path}.") from e
        finally:
            stop.set()
            beat.join()
            self.ledger.release(keys, self.owner)

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(CLAIM_TTL_S / 3):
            self.ledger.extend_claims(self.owner)
