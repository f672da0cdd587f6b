"""The Batch API against the simulated server's /v1/files and /v1/batches over real HTTP.

Checks: answers priced at batch rates and committed to the ledger; per-line failures and expiry
retried on their own; a run killed mid-poll resumes by polling (no batch submitted twice); a batch
created just before a kill is found again on the server by its input file.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from thrifty.cli import app
from thrifty.task import Task
from thrifty.teachers import CachedTeacher, Ledger
from thrifty.teachers.ledger import ledger_key
from thrifty.teachers.openai import OpenAITeacher
from thrifty.teachers.pricing import Price

PRICE = Price(1.0, 2.0, batch_prompt_per_1k=0.5, batch_completion_per_1k=1.0)
NO_KEY = "THRIFTY_TEST_NO_SUCH_KEY"


@pytest.fixture(scope="module")
def rows(ag_news):
    with open(ag_news / "pool.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))[:240]


@pytest.fixture(scope="module")
def task(ag_news):
    return Task.load(ag_news / "labels.json")


def batch_teacher(task, sim, **kw):
    return OpenAITeacher(task, "sim", base_url=sim.base_url, api_key_env=NO_KEY, price=PRICE, batch_api=True,
                         batch_poll=0.02, backoff_base=0.01, backoff_max=0.05, **kw)


def test_batch_prices_and_failed_lines_retried_alone(sim_server, task, rows, tmp_path):
    sim = sim_server(batch_line_failure=0.1)
    texts = [r["text"] for r in rows[:200]]
    with Ledger(tmp_path / "l.sqlite") as led:
        labs = CachedTeacher(batch_teacher(task, sim), led, run="r").label(texts)
        st = led.stats()
        assert led.open_batches("sim") == []  # every job collected
    assert [lab.label for lab in labs] == [sim.answer_for(t) for t in texts]
    assert all(lab.parse == "logprobs" for lab in labs)
    for lab in labs[1:]:  # the first answer is the interactive probe (does the server give logprobs?)
        u = lab.usage
        assert u.cost_usd == pytest.approx(PRICE.cost(u.prompt_tokens, u.completion_tokens, batch=True))
    s = sim.stats()
    assert s["requests"] == 1 and s["batches_created"] >= 2  # the failed lines went again, in a batch of their own
    assert s["batch_lines_submitted"] == 199 + s["texts_submitted_twice"] and 5 < s["texts_submitted_twice"] < 40
    assert s["texts_answered_twice"] == 0 and st.calls == 200
    assert st.dollars == pytest.approx(sum(lab.usage.cost_usd for lab in labs))


def test_expired_batches_are_finished_in_later_rounds(sim_server, task, rows):
    sim = sim_server(batch_expire_after=50)
    texts = [r["text"] for r in rows[:121]]
    labs = batch_teacher(task, sim).label(texts)  # no ledger: still works, just not resumable
    assert [lab.label for lab in labs] == [sim.answer_for(t) for t in texts]
    s = sim.stats()
    assert s["batch_status"] == {"expired": 2, "completed": 1} and s["texts_answered_twice"] == 0
    sim2 = sim_server(batch_expire_after=10)
    with pytest.raises(Exception, match="no answer for 89 of 119 texts after 3 rounds"):
        batch_teacher(task, sim2).label(texts[1:])  # 1 probe + 3 rounds x 10 lines: the rest is reported, not lost


def test_killed_mid_poll_resumes_by_polling(sim_server, ag_news_csv, tmp_path):
    pool = ag_news_csv(0, 240)
    sim = sim_server()
    sim.batches.hold()  # batches stay in_progress: the client keeps polling
    out = tmp_path / "run"
    args = ["distill", str(pool), "--teacher", "openai:sim", "--base-url", sim.base_url, "--api-key-env", NO_KEY,
            "--price-in", "1", "--price-out", "2", "--student", "tfidf-lr", "--budget", "60", "--batch", "20",
            "--seed-size", "20", "--val-size", "20", "--batch-api", "--batch-poll", "0.05", "--out", str(out), "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "thrifty", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 90
    while sim.stats()["batches_created"] < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # a few polls
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    s = sim.stats()
    assert s["batches_created"] == 1 and s["answered"] == 1  # the probe; the batch is still in progress
    with Ledger(out / "ledger.sqlite") as led:
        (job,) = led.open_batches("sim")
        assert job["batch_id"] and len(job["lines"]) == 19
    sim.batches.hold(False)
    r = CliRunner().invoke(app, ["distill", "--resume", str(out), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    s = sim.stats()
    assert res["ledger"]["calls"] == 60 and s["answered"] == 60
    assert s["texts_submitted_twice"] == 0 and s["texts_answered_twice"] == 0  # polled, never resubmitted
    assert s["batches_created"] == 3  # validation (resumed), seed, one round
    with Ledger(out / "ledger.sqlite") as led:
        assert led.open_batches("sim") == []


def test_batch_created_just_before_a_kill_is_found_by_its_input_file(sim_server, task, rows, tmp_path):
    sim = sim_server()
    texts = [r["text"] for r in rows[:30]]
    t = batch_teacher(task, sim)
    t.label(texts[:1])  # settle the answer mode (logprobs) with one interactive probe
    keys = [ledger_key(t.identity(), task, x) for x in texts[1:]]
    body = "".join(json.dumps({"custom_id": k, "method": "POST", "url": "/v1/chat/completions", "body": t._body(x)}) + "\n"
                   for k, x in zip(keys, texts[1:])).encode()
    # what a run does before it is killed: upload (recorded), create (not yet recorded)
    f = httpx.post(f"{sim.base_url}/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", body)}).json()
    with Ledger(tmp_path / "l.sqlite") as led:
        led.batch_uploaded(f["id"], "sim", dict(zip(keys, keys)))
        httpx.post(f"{sim.base_url}/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                                    "completion_window": "24h"})
        labs = CachedTeacher(t, led).label(texts[1:])
        assert [lab.label for lab in labs] == [sim.answer_for(x) for x in texts[1:]]
        assert led.open_batches("sim") == []
    s = sim.stats()
    assert s["batches_created"] == 1 and s["texts_submitted_twice"] == 0 and s["texts_answered_twice"] == 0


def test_a_line_refused_on_its_own_is_set_aside_not_resubmitted(sim_server, task, rows, tmp_path):
    """A content-filtered batch line (a per-text 4xx) is final: the other answers are kept, the text is set aside
    in the ledger, and neither a later round nor a later call submits it again."""
    texts = [r["text"] for r in rows[:20]]
    sim = sim_server()
    orig = sim.batches.sim.refusal
    bad = texts[5][:30]
    sim.batches.sim.refusal = lambda body: ("The response was filtered due to the prompt triggering the content "
                                            "management policy." if bad in str(body["messages"][-1]["content"])
                                            else orig(body))
    t = OpenAITeacher(task, "sim", base_url=sim.base_url, api_key_env="NO_SUCH", price=Price(1, 2), batch_api=True,
                      batch_poll=0.02, backoff_base=0.01, backoff_max=0.05)
    with Ledger(tmp_path / "l.sqlite") as led:
        labs = CachedTeacher(t, led, run="r").label(texts)
        assert [i for i, lab in enumerate(labs) if lab.rejected] == [5]
        assert led.n_labels() == 19 and len(led.rejections()) == 1
        created = sim.stats()["batches_created"]
        again = CachedTeacher(t, led, run="r").label(texts)
        assert [lab.rejected for lab in again] == [lab.rejected for lab in labs]
        assert sim.stats()["batches_created"] == created  # nothing submitted again
