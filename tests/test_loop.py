"""The distillation loop end to end on a real dataset with a recorded teacher (replay)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from thrifty import Budget, Distiller, Stopping, Task, read_corpus
from thrifty.errors import TeacherError, ThriftyError
from thrifty.students import load_model
from thrifty.teachers.replay import load_replay

from conftest import CrashingTeacher

SHARED = next((p for p in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")) if p.exists()), None)
pytestmark = pytest.mark.skipif(SHARED is None, reason="../shared/datasets not found beside the repo")
TIMING_KEYS = {"select_s", "fit_s", "wall_s", "requests", "cache_hits", "dollars_paid", "stop_reason"}


@pytest.fixture(scope="module")
def mr():
    d = SHARED / "datasets" / "mr_chatgpt"
    task = Task.load(json.loads((d / "labels.json").read_text())["labels"])
    corpus, teacher = load_replay(task, d / "pool.csv", price_in=0.5, price_out=1.5)
    test = read_corpus(d / "test.csv", gold_col="label")
    # a smaller pool keeps the test fast (the file is sorted by label: take a random subset)
    keep = np.sort(np.random.default_rng(0).choice(len(corpus), 2000, replace=False))
    corpus.texts = [corpus.texts[i] for i in keep]
    corpus.ids = corpus.ids[keep]
    return task, corpus, teacher, test


def _strip(history):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in history]


def test_fit_spends_the_budget_and_saves_a_loadable_model(mr, tmp_path):
    task, corpus, teacher, test = mr
    d = Distiller(task, teacher, strategy="mraru", budget=300, batch=50, seed_size=50, val_size=50,
                  out=tmp_path / "run", eval_texts=test.texts, eval_gold=test.gold)
    d.fit(corpus)
    h = d.history_
    assert h[-1]["labels_total"] == 300 and h[-1]["labels"] == 250
    assert [r["labels"] for r in h] == [50, 100, 150, 200, 250]
    assert "budget" in d.stop_reason_
    assert h[-1]["requests"] == 300 and h[-1]["dollars"] > 0
    assert 0 < h[-1]["scored"] < len(corpus)  # M-RARU scored a sample, not the pool
    assert h[-1]["test_accuracy"] > 0.55  # well above chance (0.5) on the gold test split
    m = load_model(tmp_path / "run")
    assert m.predict(test.texts[:20]) == d.predict(test.texts[:20])
    assert (tmp_path / "run" / "history.csv").exists()
    card = json.loads((tmp_path / "run" / "model" / "model_card.json").read_text())
    assert card["labels_paid"] == 300 and card["teacher"]["model"].startswith("replay")


def test_identical_second_run_pays_nothing(mr, tmp_path):
    task, corpus, teacher, test = mr
    kw = dict(strategy="entropy", budget=200, batch=40, seed_size=40, val_size=40, ledger=tmp_path / "shared.sqlite")
    a = Distiller(task, teacher, out=tmp_path / "a", **kw).fit(corpus)
    b = Distiller(task, teacher, out=tmp_path / "b", **kw).fit(corpus)
    assert a.history_[-1]["requests"] == 200
    assert b.history_[-1]["requests"] == 0 and b.history_[-1]["cache_hits"] == 200
    assert _strip(a.history_) == _strip(b.history_)


def test_crash_mid_round_then_resume_matches_an_uninterrupted_run(mr, tmp_path):
    task, corpus, teacher, _ = mr
    kw = dict(strategy="mraru", budget=260, batch=30, seed_size=30, val_size=50, random_state=3)
    ref = Distiller(task, teacher, out=tmp_path / "ref", **kw).fit(corpus)
    flaky = CrashingTeacher(teacher, budget=175)  # dies inside round 4
    with pytest.raises(TeacherError):
        Distiller(task, flaky, out=tmp_path / "run", **kw).fit(corpus)
    healthy = CrashingTeacher(teacher, budget=10**9)
    res = Distiller.resume(tmp_path / "run", healthy, corpus)
    assert flaky.calls + healthy.calls == 260  # no label paid twice, none lost
    assert _strip(res.history_) == _strip(ref.history_)


def test_dollar_budget_and_target_agreement(mr, tmp_path):
    task, corpus, teacher, _ = mr
    d = Distiller(task, teacher, strategy="random", budget="$3", batch=20, seed_size=20, val_size=20).fit(corpus)
    assert d.history_[-1]["dollars"] <= 3 + 1e-9
    assert d.history_[-1]["dollars"] > 3 * 0.8
    t = Distiller(task, teacher, strategy="random", budget=2000, batch=20, seed_size=20, val_size=30,
                  stopping=Stopping(target_agreement=0.5)).fit(corpus)
    assert "target agreement" in t.stop_reason_ and len(t.history_) < 5


def test_budget_parse():
    assert Budget.parse("500") == Budget(labels=500)
    assert Budget.parse("200k tokens") == Budget(tokens=200_000)
    assert Budget.parse("$5") == Budget(dollars=5.0)
    assert Budget.parse("2.5 usd") == Budget(dollars=2.5)
    with pytest.raises(ThriftyError, match="Cannot read budget"):
        Budget.parse("lots")


def test_budget_too_small_and_wrong_corpus_on_resume(mr, tmp_path):
    task, corpus, teacher, _ = mr
    with pytest.raises(ThriftyError, match="leaves no labels"):
        Distiller(task, teacher, budget=0, val_size=5).fit(corpus)
    Distiller(task, teacher, budget=60, batch=20, seed_size=20, val_size=20, out=tmp_path / "r").fit(corpus)
    small = read_corpus(SHARED / "datasets" / "mr_chatgpt" / "test.csv")
    with pytest.raises(ThriftyError, match="different corpus"):
        Distiller.resume(tmp_path / "r", teacher, small)


def test_out_dir_of_a_different_run_is_refused(mr, tmp_path):
    task, corpus, teacher, _ = mr
    kw = dict(budget=60, batch=20, seed_size=20, val_size=20, out=tmp_path / "r")
    Distiller(task, teacher, strategy="random", **kw).fit(corpus)
    again = Distiller(task, teacher, strategy="random", **kw).fit(corpus)  # identical: continues, pays nothing
    assert again.history_[-1]["requests"] == 60 and again.ledger.stats(run=again.run_id).calls == 60
    with pytest.raises(ThriftyError, match="different run"):
        Distiller(task, teacher, strategy="entropy", **kw).fit(corpus)
