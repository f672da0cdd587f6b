"""The cascade pays with an estimate and a cap: --dry-run forecasts, --max-dollars stops, the summary says what was paid.

The run's teacher is the simulated OpenAI server over real HTTP, so every escalation is a real request.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from thrifty.cli import app

runner = CliRunner()
PRICE = ["--price-in", "1.0", "--price-out", "2.0"]


@pytest.fixture(scope="module")
def run_dir(ag_news, ag_news_csv):
    """A distilled run on 300 ag_news rows with the sim as teacher; the sim keeps serving for predict."""
    from thrifty.testing.sim import SimServer

    pool, more = ag_news_csv(0, 300), ag_news_csv(300, 900)
    sim = SimServer.from_path(ag_news, noise=0.1).start()
    r = runner.invoke(app, ["distill", str(pool), "--teacher", "openai:sim", "--base-url", sim.base_url,
                            "--api-key-env", "THRIFTY_TEST_NO_SUCH_KEY", *PRICE, "--student", "tfidf-lr",
                            "--budget", "80", "--batch", "20", "--seed-size", "20", "--val-size", "40",
                            "--out", str(pool.parent / "run"), "-q"])
    assert r.exit_code == 0, r.output
    yield pool.parent, more, sim
    sim.stop()


def _predict(d, more, *extra):
    # dollars and caps are under test here: the point-estimate threshold, since 40 validation rows cannot support
    # 0.98 with the default guarantee (Learn-then-Test would send every document to the teacher)
    return runner.invoke(app, ["predict", str(d / "run"), str(more), "--cascade", "--target-agreement", "0.98",
                               "--guarantee", "estimate", *PRICE, "--workers", "1", "--batch-size", "50", "-q", "--json",
                               *extra])


def test_dry_run_then_max_dollars_then_full(run_dir, tmp_path):
    d, more, sim = run_dir
    before = sim.stats()["requests"]
    r = _predict(d, more, "--out", str(tmp_path / "dry.csv"), "--dry-run")
    assert r.exit_code == 0, r.output
    dry = json.loads(r.stdout)
    f = dry["forecast"]
    assert sim.stats()["requests"] == before and not (tmp_path / "dry.csv").exists()  # paid nothing, wrote nothing
    lo, hi = f["escalations_ci"]
    assert f["rows"] == 600 and lo <= f["escalations"] <= hi and f["escalations"] > 60
    assert f["dollars"] == pytest.approx(f["escalations"] * f["cost_per_label"], rel=0.01)
    assert f["dollars_ci"][0] < f["dollars"] < f["dollars_ci"][1]
    assert "expected dollars" in r.stderr

    # a cap well below the forecast: stops within one batch of it and says so
    cap = round(f["dollars"] / 3, 4)
    r = _predict(d, more, "--out", str(tmp_path / "capped.csv"), "--max-dollars", str(cap))
    assert r.exit_code == 0, r.output
    capped = json.loads(r.stdout)
    one_batch = 50 * f["cost_per_label"] * 1.5
    assert cap - one_batch <= capped["dollars"] <= cap + 1e-9 + f["cost_per_label"]
    assert capped["capped_by_dollars"] > 0 and "--max-dollars" in r.stderr
    paid = sim.stats()["requests"] - before
    assert paid == capped["teacher_requests"] > 0

    # without a cap it pays for the rest; the capped run's answers come from the ledger for free
    r = _predict(d, more, "--out", str(tmp_path / "full.csv"))
    full = json.loads(r.stdout)
    assert r.exit_code == 0 and full["capped_by_dollars"] == 0
    assert lo <= full["escalated"] <= hi  # the forecast's interval held
    assert 0 < full["teacher_requests"] <= full["escalated"] - capped["teacher_requests"]
    assert full["dollars"] > capped["dollars"] and sim.stats()["texts_answered_twice"] == 0  # nothing paid twice


def test_max_dollars_needs_a_price(ag_news, ag_news_csv, tmp_path):
    """A run whose teacher has no known price (the sim model is in no price table): the cascade's --max-dollars
    is refused before any request. (A run made with --price-in/--price-out keeps those prices.)"""
    from thrifty.testing.sim import SimServer

    pool, more = ag_news_csv(0, 120), ag_news_csv(120, 220)
    with SimServer.from_path(ag_news, noise=0.1) as sim:
        r = runner.invoke(app, ["distill", str(pool), "--teacher", "openai:sim", "--base-url", sim.base_url,
                                "--api-key-env", "THRIFTY_TEST_NO_SUCH_KEY", "--student", "tfidf-lr", "--budget", "40",
                                "--batch", "10", "--seed-size", "10", "--val-size", "20", "--out", str(tmp_path / "run"), "-q"])
        assert r.exit_code == 0, r.output
        before = sim.stats()["requests"]
        r = runner.invoke(app, ["predict", str(tmp_path / "run"), str(more), "--cascade", "--target-agreement", "0.98",
                                "--max-dollars", "1", "--out", str(tmp_path / "x.csv"), "-q"])
        assert r.exit_code == 2 and "--max-dollars" in r.output and "--price-in" in r.output
        assert sim.stats()["requests"] == before
