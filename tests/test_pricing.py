"""Prices: the maintained table, overrides, unknown models refused for dollar budgets, cached input priced.

Everything that talks to a teacher talks to the simulated OpenAI server over real HTTP.
"""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from thrifty.cli import app
from thrifty.errors import ThriftyError
from thrifty.task import Task
from thrifty.teachers import CachedTeacher, Ledger
from thrifty.teachers.openai import OpenAITeacher
from thrifty.teachers.pricing import Price, price_for_spec

runner = CliRunner()


@pytest.fixture(scope="module")
def pool_csv(ag_news_csv):
    return ag_news_csv(0, 300)


# ---- the table ---------------------------------------------------------------------------------
def test_current_models_are_priced_with_cache_and_batch_rates():
    pytest.importorskip("genai_prices")
    for model in ("gpt-5-mini", "o4-mini", "gpt-4.1-nano", "gpt-4o-mini-2024-07-18"):
        p = price_for_spec(f"openai:{model}")
        assert p.known and p.source.startswith("genai-prices"), (model, p)
        assert 0 < p.prompt_per_1k < p.completion_per_1k
        assert p.cached_prompt_per_1k is not None and p.cached_prompt_per_1k < p.prompt_per_1k
        b_in, b_out = p.rates(batch=True)
        assert b_in == pytest.approx(p.prompt_per_1k / 2) and b_out == pytest.approx(p.completion_per_1k / 2)


def test_unknown_model_overrides_and_user_table(tmp_path):
    p = price_for_spec("openai:my-proxy/some-model-7b")
    assert not p.known and p.cost(1000, 1000) == 0.0
    with pytest.raises(ThriftyError, match="--price-in and --price-out"):
        price_for_spec("openai:my-proxy/some-model-7b", price_in=0.1)
    p = price_for_spec("openai:my-proxy/some-model-7b", price_in=0.1, price_out=0.3)
    assert p.known and p.cost(2000, 1000) == pytest.approx(0.5)
    # a user table wins over every other source, and carries cache and batch rates
    table = tmp_path / "prices.yaml"
    table.write_text("my-proxy/: {prompt: 1.0, completion: 2.0, cached_prompt: 0.1, batch_prompt: 0.5, batch_completion: 1.0}\n"
                     "gpt-4o-mini: {prompt: 9.0, completion: 9.0}\n")
    p = price_for_spec("openai:my-proxy/some-model-7b", prices=table)
    assert p.known and p.cost(1000, 1000, cached_tokens=400) == pytest.approx(0.6 + 0.04 + 2.0)
    assert p.cost(1000, 1000, batch=True) == pytest.approx(1.5)
    assert price_for_spec("openai:gpt-4o-mini", prices=table).prompt_per_1k == 9.0
    # --price-in over a known model keeps its discount ratios
    p = price_for_spec("openai:my-proxy/x", prices=table, price_in=2.0)
    assert (p.prompt_per_1k, p.cached_prompt_per_1k, p.batch_prompt_per_1k, p.completion_per_1k) == (2.0, 0.2, 1.0, 2.0)
    table.write_text("m: {prompt: 1.0}\n")
    with pytest.raises(ThriftyError, match="'prompt' and 'completion'"):
        price_for_spec("openai:m", prices=table)
    assert price_for_spec("local").known and price_for_spec("replay").cost(10**6, 10**6) == 0.0


# ---- dollar budgets with an unknown price ------------------------------------------------------------
def test_dollar_budget_with_unknown_price_is_refused_before_any_request(sim_server, pool_csv, tmp_path):
    sim = sim_server()
    args = ["distill", str(pool_csv), "--teacher", "openai:sim", "--base-url", sim.base_url,
            "--api-key-env", "THRIFTY_TEST_NO_SUCH_KEY", "--student", "tfidf-lr", "-q"]
    r = runner.invoke(app, [*args, "--budget", "$0.50", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2, r.output
    assert "--price-in" in r.output and "'sim'" in r.output
    assert sim.stats()["requests"] == 0
    # given a price, the same budget binds: the run stops at the budget, not at the end of the pool
    r = runner.invoke(app, [*args, "--budget", "$0.50", "--price-in", "0.5", "--price-out", "1", "--batch", "20",
                            "--seed-size", "20", "--val-size", "20", "--out", str(tmp_path / "b"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # a budget is passed by at most the batch in flight (20 labels), and the stop reason says so
    per_label = out["ledger"]["dollars"] / out["ledger"]["calls"]
    assert 0.4 < out["ledger"]["dollars"] <= 0.50 + 20 * per_label and "budget" in out["stop_reason"]
    assert 0 < sim.stats()["answered"] < 300


def test_plan_warns_about_an_unknown_price(pool_csv):
    r = runner.invoke(app, ["plan", str(pool_csv), "-t", "openai:my-model", "--budget", "$5", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)  # exactly one JSON object on stdout
    assert out["price"]["known"] is False and out["warnings"] and "--price-in" in out["warnings"][0]
    assert "warning" in r.stderr and "plan: openai:my-model" in r.stderr
    r = runner.invoke(app, ["plan", str(pool_csv), "-t", "openai:gpt-4o-mini", "--budget", "$5", "--json"])
    out = json.loads(r.stdout)
    assert out["price"]["known"] and out["labels"] == 300 and not out["warnings"]  # $5 buys more than the pool
    assert out["dollars_batch_api"] < out["dollars"] <= 5.0
    assert out["prompt_example"][0]["role"] == "system" and "one request's messages" in r.stderr


# ---- cached input tokens --------------------------------------------------------------------------
def test_cached_prompt_tokens_are_read_priced_and_recorded(sim_server, ag_news, pool_csv, tmp_path):
    sim = sim_server(prompt_cache_min=0)
    task = Task.load(ag_news / "labels.json")
    price = Price(1.0, 2.0, cached_prompt_per_1k=0.25)
    t = OpenAITeacher(task, "sim", base_url=sim.base_url, api_key_env="THRIFTY_TEST_NO_SUCH_KEY", price=price,
                      concurrency=1)
    with open(pool_csv, newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in list(csv.DictReader(f))[:6]]
    led = Ledger(tmp_path / "l.sqlite")
    labs = CachedTeacher(t, led, run="r").label(texts)
    assert labs[0].usage.cached_tokens == 0  # the first request fills the cache
    for lab in labs[1:]:
        u = lab.usage
        assert 0 < u.cached_tokens < u.prompt_tokens
        assert u.cost_usd == pytest.approx(((u.prompt_tokens - u.cached_tokens) * 1.0 + u.cached_tokens * 0.25
                                            + u.completion_tokens * 2.0) / 1000)
        assert u.cost_usd < price.cost(u.prompt_tokens, u.completion_tokens)
    st = led.stats()
    assert st.cached_tokens == sim.stats()["cached_tokens"] == sum(lab.usage.cached_tokens for lab in labs)
    assert st.dollars == pytest.approx(sum(lab.usage.cost_usd for lab in labs))
    # the ledger keeps cached_tokens per answer: a cache hit reads them back
    again = CachedTeacher(t, led, run="r2").label(texts)
    assert [a.usage.cached_tokens for a in again] == [lab.usage.cached_tokens for lab in labs]
    led.close()


def test_a_price_tables_cached_and_batch_rates_survive_in_the_run_recipe(ag_news, tmp_path):
    """A run started with --prices keeps that table's cached-input and Batch API rates on --resume:
    the recipe the run directory saves rebuilds the same price (it used to keep only prompt/completion)."""
    from thrifty.teachers import make_teacher, teacher_recipe

    table = tmp_path / "prices.yaml"
    table.write_text("my-model:\n  prompt: 1.0\n  completion: 4.0\n  cached_prompt: 0.1\n"
                     "  batch_prompt: 0.5\n  batch_completion: 2.0\n")
    task = Task.load(ag_news / "labels.json")
    t = make_teacher("openai:my-model", task, base_url="http://127.0.0.1:9", prices=table)
    recipe = teacher_recipe(t)
    assert "prices" not in recipe  # the file may be gone by the time the run resumes: its rates are copied
    spec = recipe.pop("spec")
    again = make_teacher(spec, task, **recipe)
    for field in ("prompt_per_1k", "completion_per_1k", "cached_prompt_per_1k", "batch_prompt_per_1k",
                  "batch_completion_per_1k"):
        assert getattr(again.price, field) == getattr(t.price, field), field
    assert again.price.cost(1000, 0, cached_tokens=1000) == pytest.approx(0.1)
    assert again.price.cost(1000, 1000, batch=True) == pytest.approx(2.5)
