"""Strategy contract (every registered strategy) and M-RARU's bounded scoring."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty.strategies import STRATEGIES, MRARUStrategy, PoolState, entropy, least_confidence, margin, make_strategy


def _state(n=5000, k=4, seed=0, confident=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    W = rng.normal(size=(8, k)) * (20 if confident else 1)

    def proba(Xs):
        z = Xs @ W
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    return PoolState(X=X, unlabelled=np.arange(100, n), labelled=np.arange(100), n_labels=k,
                     rng=np.random.default_rng(seed), predict_proba=proba,
                     y=rng.integers(0, k, 100), teacher_confidence=np.ones(100))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_contract(name):
    s = make_strategy(name)
    st = _state()
    sel = s.select(st, 50)
    assert len(sel) == 50 and len(set(sel.tolist())) == 50
    assert set(sel.tolist()) <= set(st.unlabelled.tolist())
    # fewer candidates than requested: returns them all, no error
    st2 = _state()
    st2.unlabelled = st2.unlabelled[:7]
    assert sorted(s.select(st2, 50).tolist()) == sorted(st2.unlabelled.tolist())
    # no student yet: falls back to random without scoring
    st3 = _state()
    st3.predict_proba = None
    assert len(s.select(st3, 10)) == 10 and st3.scored == 0


def test_measures_hand_computed():
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.8, 0.2]])
    assert entropy(p).tolist() == pytest.approx([0.0, 1.0, 0.7219280948873623])
    assert least_confidence(p).tolist() == pytest.approx([0.0, 1.0, 0.4])
    assert margin(p).tolist() == pytest.approx([0.0, 1.0, 0.4])


def test_uncertainty_picks_the_most_uncertain():
    st = _state()
    sel = make_strategy("entropy").select(st, 20)
    u_all = entropy(st.predict_proba(st.X[st.unlabelled]))
    assert entropy(st.predict_proba(st.X[sel])).min() >= np.sort(u_all)[-20] - 1e-12
    assert st.scored == len(st.unlabelled)


def test_mraru_scores_a_small_sample_not_the_pool():
    st = _state(n=200_000)
    sel = MRARUStrategy(exponent=2.0).select(st, 50)
    assert len(sel) == 50
    assert st.scored < 50 * 20, st.scored  # ~n / mean acceptance, never the 199,900-row pool
    # selected rows are more uncertain than random ones on average
    u_sel = entropy(st.predict_proba(st.X[sel])).mean()
    u_rand = entropy(st.predict_proba(st.X[st.unlabelled[:5000]])).mean()
    assert u_sel > u_rand


def test_mraru_bounded_when_student_is_confident_everywhere():
    st = _state(n=100_000, confident=True)
    s = MRARUStrategy(exponent=3.0, max_scored_factor=10)
    sel = s.select(st, 40)
    assert len(sel) == 40 and st.scored <= 400


def test_mraru_exponent_sharpens_selection():
    u1 = [entropy(_state(seed=s).predict_proba(_state(seed=s).X[MRARUStrategy(exponent=1).select(_state(seed=s), 200)])).mean() for s in range(3)]
    u3 = [entropy(_state(seed=s).predict_proba(_state(seed=s).X[MRARUStrategy(exponent=4).select(_state(seed=s), 200)])).mean() for s in range(3)]
    assert np.mean(u3) > np.mean(u1)
