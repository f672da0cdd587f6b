"""Coverage (TypiClust) cold start, class-balanced margin, ``auto`` and the ClassBalancer peer."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty.strategies import AutoStrategy, CoverageStrategy, PoolState, make_strategy, margin
from thrifty.strategies.auto import balanced_top, class_quota
from thrifty.strategies.coverage import typicality


def _blobs(n_per=(400, 400, 100, 40, 20), dim=8, seed=0):
    """Well-separated clusters of very different sizes; the label of a row is its cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(n_per), dim)) * 10
    X = np.concatenate([c + rng.normal(size=(m, dim)) for c, m in zip(centres, n_per)])
    y = np.repeat(np.arange(len(n_per)), n_per)
    return X, y


def _state(X, labelled=(), proba=None, y=None, k=5, seed=0):
    lab = np.asarray(labelled, dtype=int)
    unl = np.setdiff1d(np.arange(len(X)), lab)
    return PoolState(X=X, unlabelled=unl, labelled=lab, n_labels=k, rng=np.random.default_rng(seed), predict_proba=proba,
                     y=None if y is None else np.asarray(y)[lab])


def test_typicality_prefers_dense_points():
    rng = np.random.default_rng(0)
    E = np.concatenate([rng.normal(size=(50, 2)) * 0.1, [[5.0, 5.0]]])  # a tight blob and one outlier
    t = typicality(E, k=5)
    assert t.argmin() == 50 and t[:50].min() > 5 * t[50]


def test_coverage_seed_covers_every_cluster_where_random_does_not():
    X, y = _blobs()
    covered = [len(set(y[CoverageStrategy().select(_state(X, seed=s), 5)])) for s in range(5)]
    assert covered == [5] * 5  # one typical document per cluster, the small ones included
    rand = [len(set(y[make_strategy("random").select(_state(X, seed=s), 5)])) for s in range(5)]
    assert np.mean(rand) < 4
    # with labels already in three clusters, the next picks go to the two clusters without labels
    st = _state(X, labelled=[0, 400, 800])
    sel = CoverageStrategy().select(st, 2)
    assert set(y[sel]) == {3, 4} and st.scored == 0


def test_class_quota_and_balanced_top_hand_computed():
    # class 0 has 5 labels, class 1 none, class 2 one: slots go to 1, then 1 (tie, lower index), 2, 1; never beyond availability
    assert class_quota(np.array([5, 0, 1]), np.array([10, 10, 10]), 4).tolist() == [0, 3, 1]
    assert class_quota(np.array([5, 0, 1]), np.array([10, 1, 10]), 4).tolist() == [0, 1, 3]
    assert class_quota(np.array([0, 0]), np.array([1, 1]), 5).tolist() == [1, 1]  # fewer candidates than slots
    u = np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.95])
    pred = np.array([0, 0, 1, 1, 1, 0])
    # class 0 already has 3 labels, class 1 none: 2 slots -> both to class 1, its most uncertain rows first
    assert balanced_top(u, pred, np.array([3, 0]), 2).tolist() == [2, 3]
    assert sorted(balanced_top(u, pred, np.array([0, 0]), 4).tolist()) == [0, 2, 3, 5]


def _skewed_proba(k=5):
    """A student that calls almost everything class 0, unsure between 0 and 1 on a strip."""
    W = np.zeros((8, k))
    W[0, 0] = 1.0

    def proba(Z):
        z = np.asarray(Z) @ W
        z[:, 1] = 0.5 * np.tanh(Z[:, 1])
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return proba


def test_auto_balances_classes_and_keeps_margin_order():
    X, y = _blobs()
    proba = _skewed_proba()
    lab = np.arange(0, 900, 30)
    plain = make_strategy("margin").select(_state(X, lab, proba, y), 40)
    st = _state(X, lab, proba, y)
    bal = AutoStrategy(balance=1.0).select(st, 40)
    pred = proba(X).argmax(1)
    assert len(set(pred[bal])) >= len(set(pred[plain]))
    assert st.scored == len(st.unlabelled)
    # balance=0 is plain margin (the same top rows)
    st0 = _state(X, lab, proba, y)
    assert set(AutoStrategy(balance=0.0).select(st0, 40).tolist()) == set(plain.tolist())
    with pytest.raises(ValueError, match="balance"):
        AutoStrategy(balance=2)


def test_auto_scores_a_sample_on_huge_pools():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150_000, 8))
    st = _state(X, labelled=np.arange(50), proba=_skewed_proba(), y=rng.integers(0, 5, 150_000))
    auto = AutoStrategy(candidates=5_000)
    sel = auto.select(st, 50)
    assert len(set(sel.tolist())) == 50 and st.scored == 5_000 and auto.sampled_ == 5_000
    # selected rows are more uncertain than the pool at large
    assert margin(st.predict_proba(X[sel])).mean() > margin(st.predict_proba(X[:5000])).mean()


def test_distiller_takes_the_cold_start_seed_from_the_strategy(tmp_path):
    """``auto`` labels one typical document per cluster as its seed; ``auto[coverage=0]`` a random seed."""
    from thrifty.bench.teachers import OracleTeacher
    from thrifty.corpus import Corpus
    from thrifty.loop import Distiller
    from thrifty.task import Task, text_sha256

    X, y = _blobs()
    task = Task(labels=tuple(f"c{i}" for i in range(5)))
    texts = [f"doc {i}" for i in range(len(X))]
    gold = {text_sha256(t): task.labels[c] for t, c in zip(texts, y)}

    class Precomputed:
        name = "blobs"

        def fit(self, texts):
            return self

        def transform(self, ts):
            return X[[int(t.split()[1]) for t in ts]]

    seeds = {}
    for label, params in (("coverage", {}), ("random", {"coverage": 0.0}), ("half", {"coverage": 0.4}),
                          ("capped", {"coverage_per_class": 0.4})):
        d = Distiller(task, OracleTeacher(task, gold), student="tfidf-lr", strategy="auto", strategy_params=params,
                      budget=5, batch=5, seed_size=5, val_size=0, random_state=0, features=Precomputed())
        d.fit(Corpus(texts=texts, ids=np.arange(len(texts))))
        seeds[label] = y[np.asarray(d.train_idx)].tolist()
    assert set(seeds["coverage"]) == {0, 1, 2, 3, 4}
    assert len(set(seeds["random"])) < 5
    assert len(seeds["half"]) == 5 and len(set(seeds["half"][:2])) == 2  # 2 typical (the two largest clusters) + 3 random
    assert seeds["capped"] == seeds["half"]  # 0.4 per class x 5 classes: the same 2 typical + 3 random
    with pytest.raises(ValueError, match="coverage"):
        AutoStrategy(coverage=1.5)


def test_class_balancer_peer_uses_small_text_within_classes():
    pytest.importorskip("small_text")
    from thrifty.bench import register_peers

    assert "st_class_balancer" in register_peers()
    X, y = _blobs()
    proba = _skewed_proba()
    lab = np.arange(0, 900, 30)
    st = _state(X, lab, proba, y)
    sel = make_strategy("st_class_balancer").select(st, 40)
    assert len(set(sel.tolist())) == 40 and set(sel.tolist()) <= set(st.unlabelled.tolist())
    pred = proba(X).argmax(1)
    quota = class_quota(np.bincount(y[lab], minlength=5), np.bincount(pred[st.unlabelled], minlength=5), 40)
    assert np.bincount(pred[sel], minlength=5).tolist() == quota.tolist()
    # within a class, small-text's BreakingTies: the smallest margins of that class (ties are broken either way)
    for c in np.flatnonzero(quota):
        mine = st.unlabelled[pred[st.unlabelled] == c]
        kth = np.sort(margin(proba(X[mine])))[-quota[c]]
        assert margin(proba(X[sel[pred[sel] == c]])).min() >= kth - 1e-12
