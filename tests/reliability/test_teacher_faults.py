"""Faults a teacher server produces, over real HTTP: refused texts, usable answers with broken
fields, a dead server, secrets echoed back, concurrent payers on one ledger file."""

from __future__ import annotations

import csv
import logging
import re
import socket
import sqlite3
import threading
import time

import pytest

from thrifty.errors import TeacherError, ThriftyError
from thrifty.loop import Distiller
from thrifty.corpus import read_corpus
from thrifty.testing.sim import ODD_KINDS, Fault, Faults
from thrifty.task import Task
from thrifty.teachers import CachedTeacher, Ledger, make_teacher
from thrifty.teachers.ledger import HOST
from thrifty.teachers.openai import OpenAITeacher
from thrifty.teachers.pricing import Price, load_price_table

FAST = {"backoff_base": 0.01, "backoff_max": 0.05}


@pytest.fixture(scope="module")
def rows(small_pool):
    with open(small_pool / "pool.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def task(small_pool):
    return Task.load(small_pool / "labels.json")


def teacher(task, sim, **kw):
    return OpenAITeacher(task, "sim", base_url=sim.base_url, api_key_env="THRIFTY_TEST_NO_SUCH_KEY", **{**FAST, **kw})


# ---- item 3: a text the teacher always refuses is set aside, the run carries on ---------------------
@pytest.mark.parametrize("fault", ["content_filter_400", "always_500"])
def test_run_sets_refused_texts_aside_and_finishes_on_budget(sim_server, small_pool, rows, task, tmp_path, fault):
    refused = [r["text"] for r in rows[::6]]  # one text in six
    faults = (Faults(reject="|".join(re.escape(t) for t in refused)) if fault == "content_filter_400"
              else Faults(poison=frozenset(refused)))
    sim = sim_server(small_pool, faults=faults)
    pool = read_corpus(small_pool / "pool.csv")
    out = tmp_path / "run"
    kw = dict(student="tfidf-svm", budget=45, batch=15, seed_size=15, val_size=15, out=out)
    d = Distiller(task, teacher(task, sim, max_retries=1), **kw).fit(pool)
    assert d.history_[-1]["labels_total"] == 45 and d.stop_reason_.startswith("budget")
    assert d.set_aside and d.history_[-1]["set_aside"] == len(d.set_aside)
    assert all(pool.texts[i] in refused for i in d.set_aside)
    assert not set(d.set_aside) & (set(d.train_idx) | set(d.val_idx.tolist()))
    err = "content management policy" if fault == "content_filter_400" else "HTTP 500"
    assert all(err in e for e in d.set_aside.values())
    st = d.ledger.stats()
    assert st.rejected == len(d.set_aside) and st.calls == 45 and st.possibly_billed == 0
    # a resumed run neither re-selects nor re-sends them; nothing is paid twice
    before = dict(sim.requests_by_text)
    again = Distiller.resume(out, teacher(task, sim, max_retries=1), pool)
    assert again.set_aside == d.set_aside and dict(sim.requests_by_text) == before
    assert sim.stats()["texts_answered_twice"] == 0


# ---- item 7: usable answers with broken optional fields keep their label ----------------------------
@pytest.mark.parametrize("kind", ODD_KINDS)
def test_broken_optional_field_keeps_the_label_and_is_not_paid_again(sim_server, small_pool, rows, task, tmp_path,
                                                                      kind, caplog):
    texts = [r["text"] for r in rows[:12]]
    sim = sim_server(small_pool, faults=Faults(odd=Fault(first=10**6), odd_kinds=(kind,)))
    t = teacher(task, sim)
    with Ledger(tmp_path / "l.sqlite") as led, caplog.at_level(logging.WARNING):
        labs = CachedTeacher(t, led).label(texts)
        st = led.stats()
    assert [lab.label for lab in labs] == [r["label"] for r in rows[:12]]
    assert sim.stats()["answered"] == 12 and st.calls == 12  # each answered once: nothing re-paid
    field = "logprobs" if kind.startswith("logprob") else ("usage.completion_tokens" if kind == "usage_negative"
                                                           else "usage.prompt_tokens")
    assert t.repaired[field] == 12 and sum(field in r.getMessage() or "logprobs" in r.getMessage()
                                           for r in caplog.records) == 1  # warned once
    if kind.startswith("logprob"):
        assert all(lab.parse != "logprobs" and lab.probs.max() == 1.0 for lab in labs)  # distribution dropped
    else:
        assert all(lab.usage.prompt_tokens > 0 and lab.usage.completion_tokens > 0 for lab in labs)  # estimated


def test_negative_prices_are_refused(tmp_path, task):
    with pytest.raises(ThriftyError, match="price"):
        make_teacher("openai:gpt-4o-mini", task, base_url="http://127.0.0.1:9/v1", price_in=-1.0)
    bad = tmp_path / "prices.yaml"
    bad.write_text("sim: {prompt: 0.1, completion: -0.2}\n")
    with pytest.raises(ThriftyError, match="negative price|completion price"):
        load_price_table(bad)
    assert Price(0.0, 0.0).cost(10, 10) == 0.0


# ---- item 11: a dead server fails fast; a long echoed key is scrubbed before anything is cut ---------
def test_dead_server_fails_fast_without_retrying_each_text(task, rows):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = OpenAITeacher(task, "sim", base_url=f"http://127.0.0.1:{port}/v1", api_key_env="NO_SUCH_KEY",
                      backoff_base=0.5, backoff_max=30)
    t0 = time.perf_counter()
    with pytest.raises(TeacherError, match="Cannot connect to .*nothing was paid"):
        t.label([r["text"] for r in rows[:40]])
    assert time.perf_counter() - t0 < 5.0


def test_long_key_echoed_by_the_server_never_leaks(sim_server, small_pool, task, rows, monkeypatch):
    secret = "sk-" + "".join(chr(ord("a") + (i * 7) % 26) for i in range(480))  # 483 characters
    monkeypatch.setenv("THRIFTY_TEST_LONG_KEY", secret)
    sim = sim_server(small_pool, api_key="sk-the-right-one")  # answers 401 echoing the key it was given
    t = make_teacher("openai:sim", task, base_url=sim.base_url, api_key_env="THRIFTY_TEST_LONG_KEY", **FAST)
    with pytest.raises(TeacherError, match="HTTP 401") as e:
        t.label([r["text"] for r in rows[:3]])
    msg = str(e.value)
    assert "***" in msg
    assert not any(secret[i : i + 12] in msg for i in range(len(secret) - 12))  # not even a fragment


# ---- item 2: processes sharing a ledger claim texts before paying ------------------------------------
def test_concurrent_payers_on_one_ledger_file_pay_each_text_once(sim_server, small_pool, rows, task, tmp_path):
    texts = [r["text"] for r in rows[:60]]
    sim = sim_server(small_pool, latency=0.02)
    path = tmp_path / "shared.sqlite"
    results: dict[int, list] = {}

    def worker(j: int) -> None:  # each with its own connection, owner and teacher, like separate processes
        with Ledger(path) as led:
            order = texts if j % 2 == 0 else texts[::-1]
            results[j] = CachedTeacher(teacher(task, sim, concurrency=8), led, run=f"p{j}").label(order)

    threads = [threading.Thread(target=worker, args=(j,)) for j in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    st = sim.stats()
    assert st["texts_answered"] == 60 and st["texts_answered_twice"] == 0 and st["answered"] == 60
    assert [lab.label for lab in results[0]] == [r["label"] for r in rows[:60]] == [lab.label for lab in results[1][::-1]]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # every claim released


def test_claims_of_a_dead_or_expired_owner_lapse(tmp_path):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # a pid that no longer runs
    with Ledger(tmp_path / "l.sqlite") as led:
        assert led.claim(["a", "b", "c"], f"{HOST}:{p.pid}:dead") == (["a", "b", "c"], [])  # a crashed process's claims
        assert led.claim(["a", "b"], "other-host:1:x", ttl=60) == (["a", "b"], [])  # lapse at once on this host
        assert led.claim(["a", "b", "c"], "me:1:y") == (["c"], ["a", "b"])  # a live (other-host) owner holds a, b
        led._db.execute("UPDATE claims SET expires = 0 WHERE key = 'a'")  # its claim on a was not extended
        assert led.claim(["a", "b"], "me:1:y") == (["a"], ["b"])
        led.release(["a"], "me:1:y")
        assert led.claim(["a"], "other-host:1:x") == (["a"], [])


# ---- item 6: requests sent without an answer are counted as possibly billed --------------------------
def test_ledger_stats_counts_requests_that_may_have_been_billed(sim_server, small_pool, rows, task, tmp_path):
    from typer.testing import CliRunner

    from thrifty.cli import app

    texts = [r["text"] for r in rows[:8]]
    sim = sim_server(small_pool, faults=Faults(reject=re.escape(texts[0])))
    path = tmp_path / "l.sqlite"
    with Ledger(path) as led:
        CachedTeacher(teacher(task, sim), led).label(texts[:4])  # 3 answers + 1 refused (2 error replies)
        sim.hold_after(0)  # the server takes the next requests but never answers: like a kill with them in flight
        with pytest.raises(TeacherError, match="timed out"):
            CachedTeacher(teacher(task, sim, timeout=0.3, max_retries=0), led).label(texts[4:])
        sim.release()
        st = led.stats()
    assert (st.calls, st.rejected, st.sent, st.possibly_billed) == (3, 1, 3 + 2 + 4, 4)
    r = CliRunner().invoke(app, ["ledger", "stats", str(path)])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "possibly billed, no answer recorded │ 4" in out and "texts set aside (refused) │ 1" in out
    assert "set aside (refused) text sha256" in out and "content management policy" in out
