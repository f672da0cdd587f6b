"""Current API models: request parameters per model family, and confidences when there are no logprobs.

The simulated server mimics a reasoning model (``reasoning=True``): HTTP 400 for ``max_tokens``,
``temperature`` other than 1 and ``logprobs``, no logprobs, reasoning tokens billed.
"""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
from typer.testing import CliRunner

from thrifty.cli import app
from thrifty.task import Task
from thrifty.teachers.openai import OpenAITeacher, is_reasoning_model

FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "api_key_env": "THRIFTY_TEST_NO_SUCH_KEY"}


@pytest.fixture(scope="module")
def rows(ag_news):
    with open(ag_news / "pool.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))[:200]


@pytest.fixture(scope="module")
def task(ag_news):
    return Task.load(ag_news / "labels.json")


def test_model_families():
    for m in ("o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "openai/gpt-5-nano"):
        assert is_reasoning_model(m), m
    for m in ("gpt-4o-mini", "gpt-4.1", "sim", "qwen2.5-1.5b", "gpt-3.5-turbo"):
        assert not is_reasoning_model(m), m


def _check_verbalised(labs, texts, sim, task):
    for text, lab in zip(texts, labs):
        assert lab.label == sim.answer_for(text) and lab.parse == "verbalised"
        assert lab.probs.argmax() == task.index(lab.label) and lab.probs.sum() == pytest.approx(1.0)
        assert lab.confidence == pytest.approx(max(p for _, p in sim.distribution(text, sim.answer_for(text))), abs=0.006)
    assert len({round(lab.confidence, 2) for lab in labs}) > 3  # not one-hot: confidences vary


def test_reasoning_model_gets_its_parameters_and_a_json_schema_answer(sim_server, task, rows, caplog):
    sim = sim_server(reasoning=True)
    texts = [r["text"] for r in rows[:16]]
    with caplog.at_level(logging.WARNING, logger="thrifty"):
        labs = OpenAITeacher(task, "gpt-5-mini", base_url=sim.base_url, **FAST).label(texts)
    assert sim.stats()["requests"] == 16 and not sim.stats()["faults"]  # right first time: nothing refused
    _check_verbalised(labs, texts, sim, task)
    assert all(lab.usage.completion_tokens > 32 for lab in labs)  # reasoning tokens are billed
    assert "JSON-schema" in caplog.text and "reasoning model" in caplog.text


def test_unknown_name_behind_a_reasoning_server_adapts_once(sim_server, task, rows, caplog):
    sim = sim_server(reasoning=True)
    texts = [r["text"] for r in rows[:12]]
    t = OpenAITeacher(task, "my-proxy-model", base_url=sim.base_url, concurrency=4, **FAST)
    with caplog.at_level(logging.WARNING, logger="thrifty"):
        labs = t.label(texts)
    # max_tokens, temperature and logprobs are each refused once, on the first text only
    assert sim.stats()["requests"] == 12 + 3 and sim.stats()["faults"] == {"refused": 3}
    _check_verbalised(labs, texts, sim, task)
    assert "refused a request parameter" in caplog.text


def test_server_without_logprobs_switches_to_verbalised_with_a_warning(sim_server, task, rows, caplog):
    sim = sim_server(logprobs="none")
    texts = [r["text"] for r in rows[:10]]
    with caplog.at_level(logging.WARNING, logger="thrifty"):
        labs = OpenAITeacher(task, "sim", base_url=sim.base_url, concurrency=4, **FAST).label(texts)
    assert sim.stats()["requests"] == 11  # the first answer showed no logprobs and was asked again, once
    _check_verbalised(labs, texts, sim, task)
    assert "server gives no logprobs" in caplog.text
    # asked for the bare label, it is one-hot (and says so)
    one = OpenAITeacher(task, "sim", base_url=sim.base_url, answer="text", **FAST).label(texts[:1])[0]
    assert one.confidence == 1.0 and np.count_nonzero(one.probs) == 1


def test_the_answer_discarded_when_the_server_gives_no_logprobs_is_in_the_dollars(sim_server, task, rows, tmp_path):
    """The first answer showed no logprobs and was asked again: it was billed, so its cost is added to
    that text's answer and the ledger does not count it as 'possibly billed' (it used to be left out of $)."""
    from thrifty.teachers.ledger import CachedTeacher, Ledger
    from thrifty.teachers.pricing import Price

    sim = sim_server(logprobs="none")
    texts = [r["text"] for r in rows[:8]]
    price = Price(1.0, 2.0)
    led = Ledger(tmp_path / "l.sqlite")
    auto = CachedTeacher(OpenAITeacher(task, "sim", base_url=sim.base_url, concurrency=1, price=price, **FAST), led, run="a")
    got = auto.label(texts)
    direct = OpenAITeacher(task, "sim", base_url=sim.base_url, concurrency=1, price=price, answer="json", **FAST).label(texts)
    extra = [a.usage.cost_usd - b.usage.cost_usd for a, b in zip(got, direct)]
    twice = [i for i, x in enumerate(extra) if x > 1e-12]
    assert len(twice) == 1 and all(abs(x) < 1e-12 for i, x in enumerate(extra) if i not in twice)
    first = got[twice[0]].usage
    assert first.prompt_tokens > direct[twice[0]].usage.prompt_tokens  # two requests' tokens
    st = led.stats()
    assert st.sent == 9 and st.possibly_billed == 0
    assert st.dollars == pytest.approx(sum(a.usage.cost_usd for a in got))
    led.close()


def test_a_discarded_answer_whose_second_ask_fails_stays_possibly_billed(task, tmp_path, json_server):
    """Billed, discarded (no logprobs), then the text's second ask never gets an answer: the ledger must
    keep counting that request as possibly billed, not forget it."""
    from thrifty.errors import TeacherError
    from thrifty.teachers.ledger import CachedTeacher, Ledger

    answer = {"choices": [{"message": {"role": "assistant", "content": task.labels[0]}}],
              "usage": {"prompt_tokens": 1000, "completion_tokens": 10}}
    url = json_server(lambda n, body: (200, answer) if n == 1 else (503, {"error": {"message": "overloaded"}}))
    t = OpenAITeacher(task, "sim", base_url=url, max_retries=1, **FAST)
    led = Ledger(tmp_path / "l.sqlite")
    try:  # the text is set aside (a server error on it alone) or the call fails: either way nothing is answered
        labs = CachedTeacher(t, led, run="r").label(["a text"])
        assert labs[0].label is None
    except TeacherError:
        pass
    st = led.stats()
    assert st.sent == 3 and st.calls == 0
    assert st.possibly_billed == 1  # the 200 that was discarded; the two 503s were error replies
    led.close()


def test_distill_end_to_end_on_a_reasoning_model(sim_server, ag_news_csv, tmp_path):
    sim = sim_server(reasoning=True)
    pool = ag_news_csv(0, 200)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["distill", str(pool), "--teacher", "openai:o4-mini", "--base-url", sim.base_url,
                                 "--api-key-env", "THRIFTY_TEST_NO_SUCH_KEY", "--price-in", "1.1", "--price-out", "4.4",
                                 "--extra-body", '{"reasoning_effort": "low"}', "--student", "tfidf-lr",
                                 "--budget", "60", "--batch", "20", "--seed-size", "20", "--val-size", "20",
                                 "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    st = sim.stats()
    assert st["requests"] == st["answered"] == 60 and res["ledger"]["calls"] == 60
    assert res["ledger"]["completion_tokens"] > 60 * 32 and res["ledger"]["dollars"] > 0
    assert res["last_round"]["val_agreement"] is not None
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["teacher_recipe"]["extra_body"] == {"reasoning_effort": "low"}  # a resume or cascade sends it too
    r = CliRunner().invoke(app, ["distill", str(pool), "--teacher", "openai:o4-mini", "--extra-body", "[1]"])
    assert r.exit_code == 2 and "JSON object" in r.output
    # a resume that asks with other request fields is told why it cannot, before anything is paid
    r = CliRunner().invoke(app, ["distill", "--resume", str(out), "--extra-body", '{"reasoning_effort": "high"}',
                                 "--budget", "80"])
    assert r.exit_code == 2 and 'started with --extra-body {"reasoning_effort": "low"}' in " ".join(r.output.split())
    assert sim.stats()["requests"] == 60
