"""Bad input gets one clear line (exit 2), nothing is taken silently wrong, budgets are kept, and a bug says it is one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from thrifty import Corpus, Distiller, Task
from thrifty.cli import app
from thrifty.errors import TaskError
from thrifty.stopping import Budget
from thrifty.task import text_sha256
from thrifty.teachers.replay import ReplayTeacher

SHARED = next((p for p in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")) if p.exists()), None)
runner = CliRunner()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """600 gwsd_gpt4o rows with their recorded GPT-4o labels, as CSV."""
    if SHARED is None:
        pytest.skip("../shared/datasets not found beside the repo")
    d = tmp_path_factory.mktemp("bad")
    pcsv.write_csv(pcsv.read_csv(SHARED / "datasets" / "gwsd_gpt4o" / "pool.csv").slice(0, 600), d / "pool.csv")
    (d / "labels.yaml").write_text("labels: [disagree, agree]\n")
    return d


def _distill(corpus: Path, labels: str, out: Path, *extra: str):
    return runner.invoke(app, ["distill", str(corpus), "-l", labels, "-t", "replay", "--budget", "60", "--batch", "20",
                               "--seed-size", "20", "--val-size", "20", "--student", "tfidf[char=false]-lr",
                               "--out", str(out), "-q", *extra])


def _one_line_error(r, *needles: str) -> None:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and r.output.count("error:") == 1, r.output
    for n in needles:
        assert n in r.output, (n, r.output)


def test_unreadable_files_and_label_sets_are_one_line_errors(small, tmp_path):
    labels = str(small / "labels.yaml")
    good = pcsv.read_csv(small / "pool.csv")
    pq.write_table(good, tmp_path / "whole.parquet")
    data = (tmp_path / "whole.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    _one_line_error(_distill(tmp_path / "cut.parquet", labels, tmp_path / "o1"), "Cannot read")
    (tmp_path / "fake.parquet").write_bytes((small / "pool.csv").read_bytes())
    _one_line_error(_distill(tmp_path / "fake.parquet", labels, tmp_path / "o2"), "Cannot read")
    pcsv.write_csv(pa.table({"text": ["", "  ", "\t"] * 10}), tmp_path / "empty.csv")
    _one_line_error(_distill(tmp_path / "empty.csv", "a,b", tmp_path / "o3"), "non-empty")
    _one_line_error(_distill(small / "pool.csv", "", tmp_path / "o4"), "--labels")
    (tmp_path / "n.yaml").write_text("labels: 42\n")
    _one_line_error(_distill(small / "pool.csv", str(tmp_path / "n.yaml"), tmp_path / "o5"), "labels")
    for k in range(1, 6):
        assert not (tmp_path / f"o{k}" / "config.json").exists()


def test_text_columns_that_are_not_text_are_refused(small, tmp_path):
    labels = str(small / "labels.yaml")
    for name, col in (("ints", pa.array(np.arange(100), pa.int64())),
                      ("lists", pa.array([[1, 2]] * 100)),
                      ("bytes", pa.array([b"abc"] * 100, pa.binary()))):
        pq.write_table(pa.table({"text": col}), tmp_path / f"{name}.parquet")
        _one_line_error(_distill(tmp_path / f"{name}.parquet", labels, tmp_path / name), "text column", "not text")


def test_label_sets_with_null_items_or_unknown_template_fields_are_refused(tmp_path):
    with pytest.raises(TaskError, match="empty or null"):
        Task.from_dict({"labels": ["a", None, "b"]})
    with pytest.raises(TaskError, match=r"\{labls\}"):
        Task(labels=("a", "b"), template="{instructions}\n{labls}\n{text}")
    (tmp_path / "t.yaml").write_text("labels: [a, b]\ntemplate: \"{instructions} {labels_list} {text}\"\n")
    pcsv.write_csv(pa.table({"text": ["x y", "y z"] * 10}), tmp_path / "p.csv")
    for cmd in (["plan", str(tmp_path / "p.csv"), "-l", str(tmp_path / "t.yaml"), "-t", "openai:gpt-4o-mini"],
                ["distill", str(tmp_path / "p.csv"), "-l", str(tmp_path / "t.yaml"), "-t", "openai:sim",
                 "--base-url", "http://127.0.0.1:9", "--out", str(tmp_path / "o")]):
        _one_line_error(runner.invoke(app, cmd), "{labels_list}")


def test_garbage_model_file_and_empty_texts_in_predict(small, tmp_path):
    out = tmp_path / "run"
    assert _distill(small / "pool.csv", str(small / "labels.yaml"), out).exit_code == 0
    pq.write_table(pa.table({"id": list("abcde"), "text": ["climate change is real", "", "   ", None, "we must act"]}),
                   tmp_path / "new.parquet")
    r = runner.invoke(app, ["predict", str(out), str(tmp_path / "new.parquet"), "--out", str(tmp_path / "pred.csv"),
                            "--id-col", "id", "--workers", "1", "-q"])
    assert r.exit_code == 0, r.output
    pred = pcsv.read_csv(tmp_path / "pred.csv").to_pydict()
    assert pred["empty_text"] == [False, True, True, True, False]
    assert [not lab for lab in pred["label"]] == [False, True, True, True, False]
    assert [c is None for c in pred["confidence"]] == [False, True, True, True, False]
    (out / "model" / "student.skops").write_bytes(b"this is not a model" * 50)
    for cmd in (["evaluate", str(out), str(small / "pool.csv"), "--gold-col", "teacher_label"],
                ["predict", str(out), str(tmp_path / "new.parquet"), "--out", str(tmp_path / "p2.csv"), "--workers", "1"]):
        _one_line_error(runner.invoke(app, cmd), "student.skops")
    r = runner.invoke(app, ["predict", str(out), str(tmp_path / "new.parquet"), "--out", str(tmp_path / "p3.csv"),
                            "--workers", "2"])
    _one_line_error(r, "student.skops")  # refused before any worker starts


def test_cost_budgets_overshoot_by_at_most_one_batch_in_the_seed_phase():
    """Mostly short texts and a few long ones: a short probe used to make the seed phase buy ~2x the budget."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(words, size=2 if i % 5 else 400)) + f" n{i}" for i in range(600)]
    task = Task(labels=("a", "b"))
    records = {text_sha256(t): {"label": "ab"[i % 2]} for i, t in enumerate(texts)}
    teacher = ReplayTeacher(task, records, price_in=0.01)
    corpus = Corpus(texts=texts, ids=np.arange(600).astype(str).astype(object))
    cost = [teacher.label([t])[0].usage.cost_usd for t in texts]
    batch, budget = 5, 0.05
    for seed in range(4):
        d = Distiller(task, teacher, budget=f"${budget}", batch=batch, seed_size=40, val_size=40, random_state=seed,
                      student="tfidf[char=false]-lr").fit(corpus)
        spent = d.history_[-1]["dollars"]
        assert spent <= budget + batch * max(cost), (seed, spent)
        if spent > budget:
            assert "over the" in d.stop_reason_
    assert Budget(dollars=1.0).overshoot({"dollars": 1.25}) == "$0.2500 (25.0%) over the $1.00 budget"
    assert Budget(dollars=1.0).overshoot({"dollars": 0.5}) is None


def test_an_unexpected_exception_is_reported_as_a_bug_with_the_traceback_in_a_file(tmp_path, monkeypatch):
    from thrifty.cli.app import friendly

    @friendly
    def broken() -> None:
        {}["missing"]

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(SystemExit) as e:
        broken()
    assert e.value.code == 1
    written = list(tmp_path.glob("thrifty-bug-*.txt"))
    assert len(written) == 1 and "KeyError" in written[0].read_text() and "Traceback" in written[0].read_text()
