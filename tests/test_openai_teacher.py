"""The OpenAI-compatible teacher against the simulated server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import csv
import logging
import math
import re
import time
from email.utils import formatdate

import numpy as np
import pytest

from thrifty.errors import TeacherError
from thrifty.testing.sim import GARBAGE, Fault, Faults, _first_token
from thrifty.task import Task
from thrifty.teachers import CachedTeacher, Ledger, make_teacher
from thrifty.teachers.openai import OpenAITeacher, first_token_candidates, label_distribution, retry_after_seconds
from thrifty.teachers.pricing import Price

FAST = {"backoff_base": 0.01, "backoff_max": 0.05}


@pytest.fixture(scope="module")
def rows(ag_news):
    with open(ag_news / "pool.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))[:40]


@pytest.fixture(scope="module")
def task(ag_news):
    return Task.load(ag_news / "labels.json")


def teacher(task, sim, **kw):
    return OpenAITeacher(task, "sim", base_url=sim.base_url, api_key_env="THRIFTY_TEST_NO_SUCH_KEY", **{**FAST, **kw})


def expected_probs(sim, task, text):
    """What the teacher should recover from the sim's first-token candidates."""
    p = np.zeros(task.n_labels)
    for tok, prob in sim.distribution(text, sim.answer_for(text)):
        hits = [j for j, lab in enumerate(task.labels) if _first_token(lab) == tok]
        if len(hits) == 1:
            p[hits[0]] += prob
    return p / p.sum()


# ---- answers, distributions, usage ------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["openai", "llamacpp"])
def test_logprob_formats_give_label_distribution(sim_server, task, rows, fmt):
    sim = sim_server(logprobs=fmt, noise=0.2)
    texts = [r["text"] for r in rows[:12]]
    labs = teacher(task, sim, price=Price(1.0, 2.0)).label(texts)
    for text, lab in zip(texts, labs):
        assert lab.label == sim.answer_for(text)
        assert lab.parse == "logprobs"
        np.testing.assert_allclose(lab.probs, expected_probs(sim, task, text), atol=1e-6)
        assert lab.probs.argmax() == task.index(lab.label)
        assert lab.confidence == pytest.approx(lab.probs.max())
        assert lab.confidence < 1.0
        assert lab.usage.prompt_tokens > 50 and lab.usage.completion_tokens >= 1
        assert lab.usage.cost_usd == pytest.approx(lab.usage.prompt_tokens / 1000 + 2 * lab.usage.completion_tokens / 1000)
        assert lab.usage.latency_s > 0
    # noise flips some answers away from gold, deterministically per text
    assert any(lab.label != r["label"] for lab, r in zip(labs, rows))


def test_no_logprobs_gives_one_hot(sim_server, task, rows):
    sim = sim_server(logprobs="none")
    lab = teacher(task, sim, answer="text").label([rows[0]["text"]])[0]
    assert lab.label == rows[0]["label"] and lab.parse == "exact"
    assert lab.probs.tolist() == [float(x == lab.label) for x in task.labels] and lab.confidence == 1.0


def test_server_rejecting_logprobs_is_retried_without_and_remembered(sim_server, task, rows):
    sim = sim_server(faults=Faults(reject_logprobs=True))
    t = teacher(task, sim, concurrency=1)
    labs = t.label([r["text"] for r in rows[:5]])
    assert [lab.label for lab in labs] == [r["label"] for r in rows[:5]]
    assert sim.stats()["requests"] == 6  # one rejected request, then never asks again
    assert t.identity()["top_logprobs"] == 20  # the ledger key does not change mid-run


def test_pure_parsers_handle_every_known_shape():
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    openai = {"choices": [{"message": {"content": " Sci/Tech"}, "logprobs": {"content": [
        {"token": " ", "logprob": -0.01, "top_logprobs": [{"token": " ", "logprob": -0.01}]},
        {"token": "Sci", "logprob": math.log(0.6), "top_logprobs": [
            {"token": "Sci", "logprob": math.log(0.6)}, {"token": " sci", "logprob": math.log(0.1)},
            {"token": "Business", "logprob": math.log(0.2)}, {"token": "The", "logprob": math.log(0.1)}]}]}}]}
    chosen, cands = first_token_candidates(openai)
    assert chosen == "Sci"
    np.testing.assert_allclose(label_distribution(chosen, cands, labels, "Sci/Tech"), [0, 0, 2 / 9, 7 / 9])
    # llama-server /completion with post_sampling_probs, and the older tok_str/prob shape
    post = {"completion_probabilities": [{"token": "World", "prob": 0.5, "top_probs": [
        {"token": "World", "prob": 0.5}, {"token": "Sports", "prob": 0.5}]}]}
    legacy = {"choices": [{"message": {"content": "World"}}], "completion_probabilities": [
        {"content": "World", "probs": [{"tok_str": "World", "prob": 0.75}, {"tok_str": "Sports", "prob": 0.25}]}]}
    assert label_distribution(*first_token_candidates(post), labels, "World").tolist() == [0.5, 0.5, 0, 0]
    assert label_distribution(*first_token_candidates(legacy), labels, "World").tolist() == [0.75, 0.25, 0, 0]
    # labels that share a first token cannot be told apart: no distribution (caller goes one-hot)
    amb = ["card_arrival", "card_linking", "refund"]
    assert label_distribution("card", [("card", 0.9), ("refund", 0.1)], amb, "card_arrival") is None
    # a token matching several labels is dropped from the mass
    assert label_distribution("refund", [("refund", 0.5), ("card", 0.5)], amb, "refund").tolist() == [0, 0, 1]
    assert first_token_candidates({"choices": [{"message": {"content": "x"}}]}) is None


def test_retry_after_parsing():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert 8.0 < retry_after_seconds(formatdate(time.time() + 10, usegmt=True)) <= 10.0
    assert retry_after_seconds(formatdate(time.time() - 10, usegmt=True)) == 0.0


def test_garbage_answer_is_abstention_with_raw_kept(sim_server, task, rows, tmp_path):
    sim = sim_server(abstain=1.0)
    with Ledger(tmp_path / "l.sqlite") as led:
        lab = CachedTeacher(teacher(task, sim), led).label([rows[0]["text"]])[0]
        assert lab.abstained and lab.probs is None and lab.raw == GARBAGE and lab.parse == "abstain"
        again = CachedTeacher(teacher(task, sim), led).label([rows[0]["text"]])[0]
    assert again.cached and again.raw == GARBAGE and again.label is None
    assert sim.stats()["answered"] == 1


def test_results_in_input_order_under_concurrency_and_inside_event_loop(sim_server, task, rows):
    sim = sim_server(latency=0.02)
    texts = [r["text"] for r in rows[:24]]
    seen = []

    async def from_a_running_loop():
        return teacher(task, sim, concurrency=8).label(texts, on_result=lambda i, lab: seen.append(i))

    labs = asyncio.run(from_a_running_loop())
    assert [lab.label for lab in labs] == [r["label"] for r in rows[:24]]
    assert sorted(seen) == list(range(24))


# ---- faults ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("http_date", [False, True])
def test_429_retry_after_is_honoured(sim_server, task, rows, http_date):
    wait = 1.0 if not http_date else 2.0
    sim = sim_server(faults=Faults(rate_limit=Fault(first=1), retry_after=wait, retry_after_http_date=http_date))
    t0 = time.perf_counter()
    lab = teacher(task, sim, concurrency=1).label([rows[0]["text"]])[0]
    elapsed = time.perf_counter() - t0
    assert lab.label == rows[0]["label"]
    # an HTTP-date has one-second resolution, so it may round down by up to a second
    assert elapsed >= (wait if not http_date else wait - 1.0)
    assert sim.stats()["faults"] == {"rate_limit": 1} and sim.stats()["requests"] == 2


@pytest.mark.parametrize("kind", ["server_error", "malformed", "drop"])
def test_transient_faults_are_survived(sim_server, task, rows, kind):
    sim = sim_server(faults=Faults(**{kind: Fault(first=3)}))
    texts = [r["text"] for r in rows[:6]]
    labs = teacher(task, sim, concurrency=2).label(texts)
    assert [lab.label for lab in labs] == [r["label"] for r in rows[:6]]
    st = sim.stats()
    assert st["faults"] == {kind: 3} and st["requests"] == 9 and st["texts_answered_twice"] == 0


def test_slow_reply_times_out_and_is_retried(sim_server, task, rows):
    sim = sim_server(faults=Faults(slow=Fault(first=1), slow_delay=1.5))
    t0 = time.perf_counter()
    lab = teacher(task, sim, concurrency=1, timeout=0.4).label([rows[0]["text"]])[0]
    assert lab.label == rows[0]["label"]
    assert time.perf_counter() - t0 < 1.4  # did not wait for the slow reply
    assert sim.stats()["faults"] == {"slow": 1} and sim.stats()["requests"] == 2


def test_random_faults_mix(sim_server, task, rows):
    f = Faults(rate_limit=Fault(rate=0.1), server_error=Fault(rate=0.1), malformed=Fault(rate=0.1),
               drop=Fault(rate=0.1), retry_after=0.05)
    sim = sim_server(faults=f, seed=3)
    labs = teacher(task, sim, concurrency=4, max_retries=10).label([r["text"] for r in rows])
    assert [lab.label for lab in labs] == [r["label"] for r in rows]
    assert sum(sim.stats()["faults"].values()) > 0


def test_text_failing_every_retry_is_set_aside_and_retried_by_a_later_run(sim_server, task, rows, tmp_path):
    texts = [r["text"] for r in rows[:10]]
    sim = sim_server(faults=Faults(poison=frozenset(texts[2:5])))
    led = Ledger(tmp_path / "ledger.sqlite")
    labs = CachedTeacher(teacher(task, sim, max_retries=2), led, run="r1").label(texts)
    assert [lab.rejected for lab in labs] == [False, False, True, True, True] + [False] * 5
    assert all("HTTP 500" in lab.raw and "gave up after 2 retries" in lab.raw for lab in labs[2:5])
    assert led.n_labels() == 7 and led.stats(run="r1").rejected == 3
    assert {kind for _, _, kind, _ in led.rejections()} == {"gave_up"}
    # the server heals; 'gave up' is not final, so a later call pays only for the 3 missing texts
    sim.faults.poison = frozenset()
    labs = CachedTeacher(teacher(task, sim), led).label(texts)
    assert [lab.label for lab in labs] == [r["label"] for r in rows[:10]]
    assert sum(not lab.cached for lab in labs) == 3
    st = sim.stats()
    assert st["texts_answered"] == 10 and st["texts_answered_twice"] == 0
    assert led.n_labels() == 10
    led.close()


def test_per_text_4xx_is_set_aside_for_good_and_never_sent_again(sim_server, task, rows, tmp_path):
    texts = [r["text"] for r in rows[:12]]
    pattern = "|".join(re.escape(t[:30]) for t in texts[3:5])
    sim = sim_server(faults=Faults(reject=pattern))
    led = Ledger(tmp_path / "ledger.sqlite")
    t = teacher(task, sim)
    labs = CachedTeacher(t, led, run="r1").label(texts)
    assert [i for i, lab in enumerate(labs) if lab.rejected] == [3, 4]
    assert "HTTP 400" in labs[3].raw and "content management policy" in labs[3].raw
    # a 400 is not retried (beyond one retry without logprobs while no answer has come yet) and not billed
    assert sim.stats()["answered"] == 10 and sim.requests_by_text[texts[3]] in (1, 2)
    # a content filter on one text is about the text: the teacher keeps asking the others for logprobs
    later = CachedTeacher(t, led, run="r1b").label([r["text"] for r in rows[12:16]])
    assert all(lab.parse == "logprobs" for lab in later)
    sim.reset()
    again = CachedTeacher(teacher(task, sim), led, run="r2").label(texts)
    assert sim.stats()["requests"] == 0 and [lab.rejected for lab in again] == [lab.rejected for lab in labs]
    st = led.stats(run="r1")
    assert (st.calls, st.rejected, st.possibly_billed) == (10, 2, 0) and st.sent in (12, 13, 14)
    led.close()


def test_a_batch_where_nothing_works_raises_and_sets_nothing_aside(sim_server, task, rows, tmp_path):
    texts = [r["text"] for r in rows[:6]]
    sim = sim_server(faults=Faults(server_error=Fault(first=10**6)))
    led = Ledger(tmp_path / "ledger.sqlite")
    with pytest.raises(TeacherError, match=r"6 of 6 texts could not be labelled .*HTTP 500"):
        CachedTeacher(teacher(task, sim, max_retries=1), led).label(texts)
    assert led.stats().rejected == 0 and led.n_labels() == 0
    led.close()


def test_missing_key_for_openai_is_a_clear_error(monkeypatch, task):
    monkeypatch.delenv("THRIFTY_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(TeacherError, match="THRIFTY_TEST_NO_SUCH_KEY"):
        make_teacher("openai:gpt-4o-mini", task, api_key_env="THRIFTY_TEST_NO_SUCH_KEY")


def test_api_key_never_leaks(sim_server, task, rows, tmp_path, monkeypatch, caplog):
    secret = "sk-test-THRIFTY-7f3a9c1e5b2d4468"
    monkeypatch.setenv("THRIFTY_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    texts = [r["text"] for r in rows[:6]]
    # right key, through faults that produce log lines and errors
    sim = sim_server(api_key=secret, faults=Faults(server_error=Fault(first=2), rate_limit=Fault(first=3), retry_after=0.05))
    t = make_teacher("openai:sim", task, base_url=sim.base_url, api_key_env="THRIFTY_TEST_KEY", **FAST)
    led_path = tmp_path / "ledger.sqlite"
    with Ledger(led_path) as led:
        labs = CachedTeacher(t, led).label(texts)
    assert [lab.label for lab in labs] == [r["label"] for r in rows[:6]]
    # a server that rejects the key and echoes it back: fail fast, key scrubbed
    wrong = sim_server(api_key="sk-the-right-one")
    t2 = make_teacher("openai:sim", task, base_url=wrong.base_url, api_key_env="THRIFTY_TEST_KEY", **FAST)
    t0 = time.perf_counter()
    with pytest.raises(TeacherError, match="HTTP 401") as e:
        t2.label(texts)
    assert time.perf_counter() - t0 < 2.0 and wrong.stats()["requests"] <= t2.concurrency  # not retried
    assert "THRIFTY_TEST_KEY" in str(e.value) and "***" in str(e.value)
    blobs = [str(e.value), repr(e.value), caplog.text, repr(t), str(t.identity())]
    blobs += [p.read_bytes().decode("latin-1") for p in tmp_path.iterdir() if p.is_file()]
    assert caplog.records  # the retries were logged
    for blob in blobs:
        assert secret not in blob


def test_wrong_url_fails_fast_with_hint(sim_server, task, rows):
    sim = sim_server()
    t = OpenAITeacher(task, "sim", base_url=sim.base_url + "/nope", api_key_env="THRIFTY_TEST_NO_SUCH_KEY", **FAST)
    with pytest.raises(TeacherError, match=r"HTTP 404: No route .*Check --base-url and the model name"):
        t.label([r["text"] for r in rows[:20]])
    assert sim.stats()["answered"] == 0
