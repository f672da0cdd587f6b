"""LLKD: hand-computed thresholds, gates and weights; the loop hook; resume; the CLI end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import CrashingTeacher, dataset_path
from thrifty import Distiller, Task, read_corpus
from thrifty.cli import app
from thrifty.errors import TeacherError, ThriftyError
from thrifty.strategies import LLKDStrategy, PoolState, make_strategy
from thrifty.strategies.llkd import ema_class_means, llkd_weights
from thrifty.students import load_model
from thrifty.teachers import make_teacher
from thrifty.teachers.replay import load_replay


def h(p: float) -> float:
    """Binary entropy / log 2 (the student uncertainty for K = 2)."""
    return float(-(p * np.log(p) + (1 - p) * np.log(1 - p)) / np.log(2)) if 0 < p < 1 else 0.0


def test_ema_step_moves_each_seen_class_towards_its_mean():
    tau = np.array([0.5, 0.5, 0.5])
    new = ema_class_means(tau, np.array([0.9, 0.7, 0.2, 0.1]), np.array([0, 0, 1, -1]), momentum=0.8)
    # class 0: 0.8*0.5 + 0.2*mean(0.9, 0.7) = 0.56; class 1: 0.8*0.5 + 0.2*0.2 = 0.44; class 2 unseen;
    # the abstention (-1) is ignored
    assert new == pytest.approx([0.56, 0.44, 0.5])
    assert tau.tolist() == [0.5, 0.5, 0.5]  # pure


def test_weights_are_confidence_times_uncertainty_normalised_over_kept():
    c, u = np.array([1.0, 0.5, 0.8, 0.9]), np.array([0.5, 1.0, 0.0, 1.0])
    keep = np.array([True, True, True, False])
    # products 0.5, 0.5, 0 over 3 kept rows (sum 1) -> x3; the dropped row gets 0
    assert llkd_weights(c, u, keep) == pytest.approx([1.5, 1.5, 0.0, 0.0])
    # all products zero: uniform over the kept rows
    assert llkd_weights(c, np.zeros(4), keep) == pytest.approx([1.0, 1.0, 1.0, 0.0])


def _state(P, unlabelled, known=None, labelled=(), y=None, conf=None):
    P = np.asarray(P, dtype=float)
    return PoolState(
        X=np.arange(len(P))[:, None], unlabelled=np.asarray(unlabelled), labelled=np.asarray(labelled, dtype=int),
        n_labels=P.shape[1], rng=np.random.default_rng(0), predict_proba=lambda X: P[X[:, 0]],
        y=None if y is None else np.asarray(y), teacher_confidence=None if conf is None else np.asarray(conf), known=known,
    )


# student distributions for 6 pool rows (K = 2); row 4 is unused
P6 = [[0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5], [0.78, 0.22]]


def test_pool_setting_gates_on_both_thresholds_then_ranks_by_c_times_u():
    yt, ct = np.array([0, 0, 1, 1]), np.array([0.6, 0.9, 0.95, 0.7])
    s = LLKDStrategy(momentum=0.5)
    state = _state(P6[:4], [0, 1, 2, 3], known=lambda idx: (yt[idx], ct[idx]))
    sel = s.select(state, 2)
    u = np.array([h(0.5), h(0.9), h(0.6), h(0.2)])
    # tau_T starts at 1/K = 0.5 -> 0.5*0.5 + 0.5*mean(c of class) : class 0 -> 0.625, class 1 -> 0.6625
    assert s.tau_teacher_ == pytest.approx([0.625, 0.6625])
    # tau_S starts at 0 -> 0.5 * mean(u of class, by teacher label)
    assert s.tau_student_ == pytest.approx([0.5 * (u[0] + u[1]) / 2, 0.5 * (u[2] + u[3]) / 2])
    # row 0 fails the teacher gate (0.6 < 0.625); rows 1-3 pass both; c*u = .42, .92, .51
    assert sel.tolist() == [2, 3]
    assert s.passed_ == 3
    assert s.setting_ == "pool"
    # asked for all four: the failed row comes last although its c*u (0.6) beats row 1's
    s2 = LLKDStrategy(momentum=0.5)
    assert s2.select(_state(P6[:4], [0, 1, 2, 3], known=lambda idx: (yt[idx], ct[idx])), 4).tolist() == [2, 3, 1, 0]
    assert s.selected_uncertainty_ == pytest.approx({2: u[2], 3: u[3]})


def test_active_setting_is_class_fair_uncertainty_sampling():
    rows = [0, 1, 2, 3, 5]
    s = LLKDStrategy(momentum=0.5)
    sel = s.select(_state(P6, rows), 3)
    u = {i: h(P6[i][0]) for i in rows}
    # predicted class 0: rows 0, 1, 2, 5; class 1: row 3.  tau_S = 0.5 * class mean
    tau0, tau1 = 0.5 * np.mean([u[0], u[1], u[2], u[5]]), 0.5 * u[3]
    assert s.tau_student_ == pytest.approx([tau0, tau1])
    # priority u - tau_S[pred]: row 3 (u=.72, the only class-1 row) beats row 5 (u=.76, class 0)
    assert u[5] > u[3] and u[3] - tau1 > u[5] - tau0
    assert sel.tolist() == [0, 2, 3]
    assert s.setting_ == "active"
    # plain entropy would have taken row 5 instead
    assert sorted(make_strategy("entropy").select(_state(P6, rows), 3).tolist()) == [0, 2, 5]


def test_fixed_thresholds_do_not_move():
    s = LLKDStrategy(adaptive=False, teacher_threshold=0.8, student_threshold=0.3)
    s.select(_state(P6, [0, 1, 2, 3, 5]), 2)
    assert s.tau_teacher_.tolist() == [0.8, 0.8] and s.tau_student_.tolist() == [0.3, 0.3]


def _trained(setting_known: bool, **kw):
    s = LLKDStrategy(**kw)
    s.load_state_dict({"tau_teacher": [0.5, 0.6], "tau_student": [0.0, 0.0], "selected_uncertainty": {"10": 0.5, "11": 1.0}})
    state = _state(np.full((14, 2), 0.5), [], known=(lambda idx: None) if setting_known else None,
                   labelled=[10, 11, 12, 13], y=[0, 1, 0, -1], conf=[0.9, 0.5, 0.3, 0.0])
    return s.train_weights(state)


def test_train_weights_pool_setting_sets_low_confidence_aside_and_counts_it():
    tw = _trained(True)
    # row 11: 0.5 < tau_T[1] = 0.6 and row 12: 0.3 < 0.5 are below threshold; row 13 abstained
    assert tw.mask.tolist() == [True, False, False, False]
    assert tw.weights == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert tw.counts["llkd_kept"] == 1 and tw.counts["llkd_below_teacher_threshold"] == 2
    assert tw.counts["llkd_set_aside"] == 2


def test_train_weights_active_setting_down_weights_paid_labels():
    tw = _trained(False)
    # factors 1, .5, .5 (below threshold), 0 (abstained); c*u*factor = .45, .25, .15 (u of row 12 = 1:
    # never selected by a student, i.e. the random seed) -> normalised to mean 1 over 3 kept rows
    assert tw.mask.tolist() == [True, True, True, False]
    assert tw.weights == pytest.approx(np.array([0.45, 0.25, 0.15, 0.0]) * 3 / 0.85)
    assert tw.counts["llkd_kept"] == 3 and tw.counts["llkd_set_aside"] == 0
    unweighted = _trained(False, weighted=False)
    assert unweighted.weights == pytest.approx([1.5, 0.75, 0.75, 0.0])


def test_bad_parameters_and_pool_setting_without_a_recording():
    with pytest.raises(ThriftyError, match="setting"):
        LLKDStrategy(setting="paper")
    with pytest.raises(ThriftyError, match="momentum"):
        LLKDStrategy(momentum=1.0)
    with pytest.raises(ThriftyError, match="replay"):
        LLKDStrategy(setting="pool").select(_state(P6, [0, 1]), 1)


# ---- through the loop ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mr():
    d = dataset_path("mr_chatgpt")
    task = Task.load(str(d / "labels.json"))
    corpus, teacher = load_replay(task, d / "pool.csv")
    keep = np.sort(np.random.default_rng(0).choice(len(corpus), 1500, replace=False))
    corpus.texts, corpus.ids = [corpus.texts[i] for i in keep], corpus.ids[keep]
    corpus.extra = {}
    return task, corpus, teacher


def test_crash_then_resume_restores_thresholds_and_matches_an_uninterrupted_run(mr, tmp_path):
    task, corpus, teacher = mr
    kw = dict(strategy="llkd", strategy_params={"setting": "active"}, budget=250, batch=50, seed_size=50, val_size=0)
    ref = Distiller(task, teacher, out=tmp_path / "ref", **kw).fit(corpus)
    with pytest.raises(TeacherError):
        Distiller(task, CrashingTeacher(teacher, 170), out=tmp_path / "run", **kw).fit(corpus)
    res = Distiller.resume(tmp_path / "run", CrashingTeacher(teacher, 10**9), corpus)
    a, b = (json.loads((p / "state.json").read_text()) for p in (tmp_path / "ref", tmp_path / "run"))
    assert a["train_idx"] == b["train_idx"]
    assert a["strategy_state"] == b["strategy_state"]
    assert a["strategy_state"]["setting"] == "active" and len(a["strategy_state"]["selected_uncertainty"]) == 200
    drop = {"select_s", "fit_s", "wall_s", "requests", "cache_hits", "dollars_paid"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in res.history_] == \
           [{k: v for k, v in r.items() if k not in drop} for r in ref.history_]
    last = ref.history_[-1]
    assert last["llkd_kept"] + last["llkd_set_aside"] + last["abstained"] == last["labels"]


def test_cli_distill_with_llkd_and_a_recorded_teacher(tmp_path):
    d = dataset_path("gwsd_gpt4o")  # GPT-4o labels with stated confidence
    out = tmp_path / "run"
    r = CliRunner().invoke(app, [
        "distill", str(d / "pool.csv"), "--teacher", "replay", "--strategy", "llkd", "--budget", "250",
        "--batch", "50", "--seed-size", "50", "--val-size", "0", "--eval", str(d / "test.csv"),
        "--gold-col", "label", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    state = json.loads((out / "state.json").read_text())
    st = state["strategy_state"]
    assert st["setting"] == "pool"  # a recording: the paper's setting
    assert len(st["tau_teacher"]) == 2 and all(t > 0.5 for t in st["tau_teacher"])  # moved up from 1/K
    with open(out / "history.csv", newline="") as f:
        hist = list(csv.DictReader(f))
    assert [int(r["labels"]) for r in hist] == [50, 100, 150, 200, 250]
    for row in hist:  # every label is either used or counted as set aside
        assert int(row["llkd_kept"]) + int(row["llkd_set_aside"]) + int(row["abstained"]) == int(row["labels"])
    assert sum(int(r["llkd_below_teacher_threshold"]) for r in hist) > 0  # GPT-4o states low confidence sometimes
    test = read_corpus(d / "test.csv", gold_col="label")
    pred = load_model(out).predict(test.texts[:50])
    assert set(pred) <= {"agree", "disagree"} and len(set(pred)) == 2


def test_soft_labels_fit_the_teachers_distributions(tmp_path):
    d = dataset_path("trec6")  # the local Qwen teacher's full label distributions, by pool row
    task = Task.load(str(d / "labels.json"))
    corpus = read_corpus(d / "pool.csv")
    teacher = make_teacher(f"replay:{d / 'teacher_qwen2.5-1.5b.csv'}", task, corpus)
    fits = {}
    for soft in (False, True):
        dist = Distiller(task, teacher, strategy="llkd", strategy_params={"soft": soft}, budget=60,
                         seed_size=60, val_size=0).fit(corpus)
        idx = np.asarray(dist.train_idx)
        fits[soft] = (idx, dist.predict_proba([corpus.texts[i] for i in idx]))
    assert np.array_equal(fits[False][0], fits[True][0])  # the same random seed set: only the targets differ
    idx, p_soft = fits[True]
    teacher_p = np.stack([teacher.label([corpus.texts[i]])[0].probs for i in idx])
    # hard labels push the student to ~certainty on its training documents; soft labels keep the
    # teacher's doubt (its mean confidence on trec6 is well below 1)
    assert fits[False][1].max(axis=1).mean() > p_soft.max(axis=1).mean() + 0.05
    assert np.abs(p_soft - teacher_p).sum(axis=1).mean() < np.abs(fits[False][1] - teacher_p).sum(axis=1).mean()
