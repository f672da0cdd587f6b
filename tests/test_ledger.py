"""Ledger: real SQLite file, commit-per-answer, cache hits, stats, replay teacher through it."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from thrifty.corpus import Corpus
from thrifty.errors import TeacherError
from thrifty.task import Task
from thrifty.teachers.base import TeacherLabel, Usage
from thrifty.teachers.ledger import CachedTeacher, Ledger
from thrifty.teachers.parsing import parse_label
from thrifty.teachers.replay import ReplayTeacher

TASK = Task.load("World,Sports,Business,Sci/Tech")


class CountingTeacher:
    """A real (in-process) teacher that labels by keyword and counts calls; can fail mid-batch."""

    task = TASK

    def __init__(self, fail_after: int | None = None):
        self.calls: list[str] = []
        self.fail_after = fail_after

    def identity(self):
        return {"model": "keyword-v1", "temperature": 0}

    def label(self, texts, on_result=None):
        out = []
        for i, t in enumerate(texts):
            if self.fail_after is not None and len(self.calls) >= self.fail_after:
                raise TeacherError("server went away")
            self.calls.append(t)
            lab = "Sports" if "match" in t else "World"
            p = np.zeros(4)
            p[TASK.index(lab)] = 1
            r = TeacherLabel(lab, p, 1.0, raw=lab, usage=Usage(10, 1, 0.01, 0.002))
            out.append(r)
            if on_result:
                on_result(i, r)
        return out


def test_cache_hits_cost_nothing_and_stats_add_up(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    t = CountingTeacher()
    ct = CachedTeacher(t, led, run="r1")
    texts = ["a match", "a summit", "a match"]  # duplicate text: one request
    res = ct.label(texts)
    assert [r.label for r in res] == ["Sports", "World", "Sports"]
    assert len(t.calls) == 2
    res2 = CachedTeacher(t, led, run="r2").label(texts)
    assert len(t.calls) == 2 and all(r.cached for r in res2)
    s1, s2 = led.stats(run="r1"), led.stats(run="r2")
    assert (s1.calls, s1.cache_hits) == (2, 0)
    assert (s2.calls, s2.cache_hits) == (0, 3)
    assert s2.dollars_saved == pytest.approx(3 * 0.002)
    assert led.stats().dollars == pytest.approx(2 * 0.002)


def test_each_answer_is_committed_before_a_failure(tmp_path):
    path = tmp_path / "l.sqlite"
    led = Ledger(path)
    ct = CachedTeacher(CountingTeacher(fail_after=2), led)
    with pytest.raises(TeacherError):
        ct.label(["t1", "t2", "t3", "t4"])
    # another process (a new connection) sees both paid answers
    n = sqlite3.connect(path).execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    assert n == 2
    t2 = CountingTeacher()
    CachedTeacher(t2, Ledger(path)).label(["t1", "t2", "t3", "t4"])
    assert t2.calls == ["t3", "t4"]


def test_key_depends_on_prompt_and_model(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    t = CountingTeacher()
    CachedTeacher(t, led).label(["x"])
    other = CountingTeacher()
    other.task = Task(labels=TASK.labels, instructions="Different prompt.")
    CachedTeacher(other, led).label(["x"])
    assert len(other.calls) == 1


def test_parse_label_cascade():
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    assert parse_label("Sports", labels) == ("Sports", "exact")
    assert parse_label(" sci / tech. ", labels) == ("Sci/Tech", "normalised")
    assert parse_label("The answer is Business.", labels) == ("Business", "contains")
    assert parse_label("Sprots", labels) == ("Sports", "fuzzy")
    assert parse_label("I cannot tell", labels) == (None, "abstain")
    assert parse_label("World or Sports", labels) == (None, "abstain")


def test_replay_teacher_from_columns_and_abstentions():
    corpus = Corpus(texts=["a", "b", "c"], ids=np.array(["0", "1", "2"], dtype=object),
                    extra={"teacher_label": ["Sports", "", "nonsense"], "teacher_confidence": [0.9, None, 0.5]})
    t = ReplayTeacher.from_corpus_column(TASK, corpus)
    res = t.label(["a", "b", "c", "never recorded"])
    assert res[0].label == "Sports" and res[0].confidence == pytest.approx(0.9)
    assert res[0].probs.sum() == pytest.approx(1.0)
    assert [r.label for r in res[1:]] == [None, None, None]
    assert res[2].raw == "nonsense"


def test_replay_teacher_from_file_by_row_with_distributions(tmp_path):
    f = tmp_path / "rec.csv"
    f.write_text('row,teacher_label,teacher_confidence,teacher_probs\n1,Business,0.7,"{""World"":0.1,""Sports"":0.1,""Business"":0.7,""Sci/Tech"":0.1}"\n')
    corpus = Corpus(texts=["a", "b"], ids=np.array(["0", "1"], dtype=object))
    t = ReplayTeacher.from_file(TASK, corpus, f)
    r = t.label(["b", "a"])
    assert r[0].label == "Business" and r[0].probs.tolist() == pytest.approx([0.1, 0.1, 0.7, 0.1])
    assert r[1].label is None



def _use_ledger(path: str, start: float, claims: int, opens: int) -> list[str]:
    """From ``start``: open the ledger ``opens`` times, or once and make ``claims`` claims."""
    import time

    from thrifty.teachers.ledger import Ledger

    time.sleep(max(0.0, start - time.time()))
    errors = []
    for i in range(opens):
        try:
            ledger = Ledger(path)
            for c in range(claims):
                ledger.claim([f"{start}-{i}-{c}-{j}" for j in range(10)], owner=f"{start}-{i}")
            ledger.close()
        except Exception as e:  # reported to the parent, which asserts on it
            errors.append(f"{type(e).__name__}: {e}")
    return errors


def test_processes_opening_one_new_ledger_together_all_succeed(tmp_path):
    """Two distills sharing a new --ledger open it while the other writes claims: SQLite may
    answer "database is locked" at once (no busy wait) to a connection setting up; opening must
    wait it out. Without the retry this failed in about 4 of 6 trials."""
    import multiprocessing as mp
    import time

    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        for trial in range(6):
            path, start = str(tmp_path / f"shared{trial}.sqlite"), time.time() + 0.5
            jobs = [pool.apply_async(_use_ledger, (path, start, 200, 1)) for _ in range(2)]
            jobs += [pool.apply_async(_use_ledger, (path, start, 0, 30)) for _ in range(2)]
            errors = [e for job in jobs for e in job.get(timeout=120)]
            assert errors == [], errors
