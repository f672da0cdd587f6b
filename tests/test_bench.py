"""Benchmark harness: simulated teachers through the ledger, datasets, metrics, the small-text peer, the smoke grid."""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from thrifty.bench import NoisyTeacher, OracleTeacher, load_dataset, make_bench_teacher, register_peers
from thrifty.bench.datasets import shared_root
from thrifty.bench.grid import parse_strategy, parse_student
from thrifty.bench.metrics import aulc, labels_to_reach, ratio, smooth, summarise
from thrifty.cli import app
from thrifty.errors import ThriftyError
from thrifty.strategies import PoolState, make_strategy
from thrifty.task import Task, text_sha256
from thrifty.teachers.ledger import CachedTeacher, Ledger

try:
    shared_root()
    HAVE_SHARED = True
except ThriftyError:
    HAVE_SHARED = False
needs_shared = pytest.mark.skipif(not HAVE_SHARED, reason="shared datasets not present")


def _gold(n=3000, k=4):
    task = Task(labels=tuple(f"c{i}" for i in range(k)))
    texts = [f"document number {i}" for i in range(n)]
    gold = {text_sha256(t): task.labels[i % k] for i, t in enumerate(texts)}
    return task, texts, gold


# ---- simulated teachers ----------------------------------------------------------------------
def test_noisy_teacher_rate_is_class_conditional_and_deterministic(tmp_path):
    task, texts, gold = _gold()
    t = NoisyTeacher(task, gold, rate=0.3, seed=1)
    answers = [a.label for a in t.label(texts)]
    truth = [gold[text_sha256(x)] for x in texts]
    wrong = [(g, a) for g, a in zip(truth, answers) if g != a]
    assert 0.26 < len(wrong) / len(texts) < 0.34
    # class-conditional: the wrong answers for one class are spread unevenly, as the confusion row says
    c0 = Counter(a for g, a in wrong if g == "c0")
    row = t.confusion[0, 1:] / t.confusion[0, 1:].sum()
    emp = np.array([c0[lab] for lab in task.labels[1:]], float) / sum(c0.values())
    assert np.abs(emp - row).max() < 0.08
    assert t.confusion.sum(1) == pytest.approx(np.ones(4))
    # deterministic per (text, seed); another seed is another teacher with another ledger identity
    assert [a.label for a in NoisyTeacher(task, gold, 0.3, seed=1).label(texts[:200])] == answers[:200]
    assert NoisyTeacher(task, gold, 0.3, seed=2).identity() != t.identity()
    with pytest.raises(ThriftyError, match="rate"):
        NoisyTeacher(task, gold, 1.5)


def test_oracle_goes_through_the_ledger(tmp_path):
    task, texts, gold = _gold(200)
    from thrifty.teachers.pricing import Price

    ledger = Ledger(tmp_path / "l.sqlite")
    ct = CachedTeacher(OracleTeacher(task, gold, price=Price(0.15, 0.6)), ledger, run="r")
    labs = ct.label(texts[:50])
    assert [x.label for x in labs] == [gold[text_sha256(t)] for t in texts[:50]]
    assert ct.requests == 50 and ledger.stats().dollars > 0
    again = CachedTeacher(OracleTeacher(task, gold), Ledger(tmp_path / "l.sqlite"), run="r2")
    again.label(texts[:50])
    assert again.requests == 0 and again.hits == 50
    # a text without gold is an abstention, never an invented label
    assert OracleTeacher(task, gold).label(["unknown text"])[0].label is None


# ---- datasets ------------------------------------------------------------------------------------
@needs_shared
def test_recorded_teacher_excludes_few_shot_rows():
    data = load_dataset("trec6")
    meta = json.loads((data.directory / "teacher_qwen2.5-1.5b.json").read_text())
    shots = {data.corpus.texts[r] for r in meta["shot_rows"]}
    setup = make_bench_teacher("recorded", data)
    assert shots and not shots & set(setup.corpus.texts)
    rec = pd.read_csv(data.directory / "teacher_qwen2.5-1.5b.csv")
    by_text = {data.corpus.texts[r]: lab for r, lab in zip(rec["row"], rec["teacher_label"])}
    assert all(by_text[t] == a for t, a in zip(setup.corpus.texts[:300], setup.answers[:300]))
    agree = np.mean([a == g for a, g in zip(setup.answers, setup.corpus.gold)])
    assert 0.6 < agree < 0.9  # the real, noisy local LLM (~74% on trec6)


@needs_shared
def test_recorded_column_and_missing_recording():
    data = load_dataset("gwsd_gpt4o")
    setup = make_bench_teacher("recorded", data)
    assert setup.answers == [str(x) if x else None for x in data.corpus.extra["teacher_label"]]
    with pytest.raises(ThriftyError, match="no recorded teacher"):
        make_bench_teacher("recorded", load_dataset("sst2", max_pool=100))


def test_user_file_dataset_and_errors(tmp_path):
    rows = [{"text": f"text {i} {'good' if i % 2 else 'bad'}", "y": "pos" if i % 2 else "neg"} for i in range(100)]
    p = tmp_path / "mine.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    data = load_dataset(p, gold_col="y")
    assert data.task.labels == ("neg", "pos")
    assert len(data.corpus) == 80 and len(data.test_texts) == 20
    assert not set(data.corpus.texts) & set(data.test_texts)  # never train on the test split
    setup = make_bench_teacher("noisy:0.1", data)
    assert len(setup.answers) == 80
    with pytest.raises(ThriftyError, match="gold column"):
        load_dataset(p, gold_col="label")
    with pytest.raises(ThriftyError, match="Unknown dataset"):
        load_dataset("no_such_dataset")
    with pytest.raises(ThriftyError, match="noise rate"):
        make_bench_teacher("noisy:lots", data)


# ---- metrics ---------------------------------------------------------------------------------------
def test_metrics_hand_computed():
    lab = np.array([100, 200, 300, 400])
    acc = np.array([0.5, 0.7, 0.6, 0.8])
    sm = smooth(lab, acc)
    assert sm.tolist() == pytest.approx([0.5, 0.65, 0.65, 0.8])  # the dip is pooled, not a running max
    assert labels_to_reach(lab, sm, 0.65) == 200
    assert labels_to_reach(lab, sm, 0.9) is None
    assert aulc(lab, acc) == pytest.approx((0.6 + 0.65 + 0.7) * 100 / 300)
    assert ratio(200, 800, 1000).value == 0.25 and not ratio(200, 800, 1000).bound
    r = ratio(200, None, 1000)
    assert r.value == 0.2 and r.bound and str(r) == "<=0.20"
    assert ratio(None, 500, 1000).value is None


def test_summarise_ratio_to_random():
    rows = []
    for strat, curve in {"random": [0.5, 0.6, 0.7, 0.8], "margin": [0.6, 0.8, 0.8, 0.8]}.items():
        for seed in (0, 1):
            for r, (lab, a) in enumerate(zip([100, 200, 300, 400], curve)):
                rows.append(dict(dataset="d", teacher="oracle", student="s", strategy=strat, seed=seed, round=r,
                                 labels_total=lab, test_accuracy=a, pool_agreement=a, dollars=lab * 0.001,
                                 select_s=0.01, full_pool_accuracy=0.8))
    s = summarise(pd.DataFrame(rows)).set_index("strategy")
    assert s.loc["random", "labels_to_98"] == 400 and s.loc["margin", "labels_to_98"] == 200
    assert s.loc["margin", "ratio_98"] == pytest.approx(0.5)
    assert s.loc["margin", "dollars_at_98"] == pytest.approx(0.2)
    assert s.loc["margin", "ratio_match_random"] == pytest.approx(0.5) and s.loc["random", "ratio_match_random"] == 1.0


def test_parse_specs():
    assert parse_strategy("mraru[exponent=1]") == ("mraru", {"exponent": 1})
    assert parse_strategy("mraru[exponent=2.5,measure=margin]") == ("mraru", {"exponent": 2.5, "measure": "margin"})
    assert parse_student("tfidf[char=false,max_features=5000]-lr") == ("tfidf", {"char": False, "max_features": 5000}, "lr")
    with pytest.raises(ThriftyError, match="Unknown strategy"):
        parse_strategy("telepathy")
    from thrifty.cli.bench import _split

    assert _split("random, mraru[exponent=1,measure=margin],margin") == ["random", "mraru[exponent=1,measure=margin]", "margin"]


# ---- the small-text peer ----------------------------------------------------------------------------
def _state(n=3000, k=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 16))
    W = rng.normal(size=(16, k))

    def proba(Z):
        z = Z @ W
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return PoolState(X=X, unlabelled=np.arange(200, n), labelled=np.arange(200), n_labels=k, rng=np.random.default_rng(seed),
                     predict_proba=proba, y=rng.integers(0, k, 200), teacher_confidence=np.ones(200))


def test_small_text_breaking_ties_matches_thrifty_margin():
    pytest.importorskip("small_text")
    assert "st_breaking_ties" in register_peers()
    st = _state()
    peer = make_strategy("st_breaking_ties").select(st, 40)
    assert st.scored == 3000  # small-text scores the whole dataset it is given
    ours = make_strategy("margin").select(_state(), 40)
    assert set(peer.tolist()) == set(ours.tolist())
    km = make_strategy("st_kmeans").select(_state(), 20)
    assert len(set(km.tolist())) == 20 and set(km.tolist()) <= set(range(200, 3000))
    assert make_strategy("st_kmeans").select(_state(), 20).tolist() == km.tolist()  # seeded from the run's RNG
    none = _state()
    none.predict_proba = None
    assert len(make_strategy("st_breaking_ties").select(none, 10)) == 10 and none.scored == 0


# ---- the harness end to end -------------------------------------------------------------------------
@needs_shared
def test_smoke_grid_cli_writes_results_plots_and_report(tmp_path):
    out, md, cache = tmp_path / "results", tmp_path / "BENCHMARKS.md", tmp_path / "cache"
    args = ["bench", "--smoke", "--out", str(out), "--md", str(md), "--cache", str(cache)]
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert time.perf_counter() - t0 < 180
    rounds = pd.read_csv(out / "rounds.csv")
    assert {"oracle", "recorded"} <= set(rounds["teacher"]) and {"trec6", "gwsd_gpt4o"} == set(rounds["dataset"])
    assert rounds["labels_total"].max() == 200 and rounds["test_accuracy"].between(0, 1).all()
    assert rounds.groupby(["dataset", "teacher"])["dollars"].max().gt(0).all()  # priced through the ledger
    summary = pd.read_csv(out / "summary.csv")
    assert {"labels_to_98", "ratio_98", "aulc", "select_s_per_round", "dollars_at_98"} <= set(summary.columns)
    pngs = sorted((out / "plots").glob("*.png"))
    assert len(pngs) == 4 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    text = md.read_text()
    assert "## Headline" in text and "st_breaking_ties" in text and "](results/plots/" in text
    assert "](results/report.html)" in text and str(out / "report.html") in res.output  # the HTML page (test_bench_page.py)
    (out / "report.html").unlink()
    # regenerating from the cache runs nothing and gives the same numbers
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, args + ["--report-only"])
    assert res.exit_code == 0, res.output
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), summary)
    assert (out / "report.html").stat().st_size > 4 * min(p.stat().st_size for p in pngs)  # rebuilt, plots inlined


@needs_shared
def test_scale_probe_mraru_scores_a_sample(tmp_path):
    from thrifty.bench import run_scale

    df = run_scale(tmp_path, dataset="trec6", sizes=[2000, 20000], strategies=["entropy", "mraru"], repeats=1)
    by = df.set_index(["pool_size", "strategy"])
    assert by.loc[(20000, "entropy"), "scored"] == 20000 - 500
    assert by.loc[(20000, "mraru"), "scored"] < 2500
    assert (tmp_path / "scale.png").exists() and (tmp_path / "scale.csv").exists()
