"""Task loading/hashing and corpus IO on real CSV, JSONL and Parquet files."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thrifty.corpus import iter_batches, read_corpus, write_table
from thrifty.errors import CorpusError, TaskError, UnknownLabelError
from thrifty.task import Task


def test_task_from_yaml_with_descriptions_and_examples(tmp_path):
    p = tmp_path / "labels.yaml"
    p.write_text(
        "labels:\n  - name: pos\n    description: happy\n  - neg\nexamples:\n  - {text: great, label: pos}\n"
    )
    t = Task.load(p)
    assert t.labels == ("pos", "neg")
    assert t.descriptions == {"pos": "happy"}
    assert "- pos: happy" in t.render("x") and "Text: great\nLabel: pos" in t.render("x")
    assert t.chat_messages("doc")[-1] == {"role": "user", "content": "doc"}


def test_task_hashes_are_stable_and_sensitive():
    a, b = Task.load("x,y"), Task.load(["x", "y"])
    assert a.prompt_hash == b.prompt_hash and a.label_set_hash == b.label_set_hash
    c = Task(labels=("x", "y"), instructions="Other instructions.")
    assert c.prompt_hash != a.prompt_hash and c.label_set_hash == a.label_set_hash
    assert Task.load("y,x").label_set_hash != a.label_set_hash


def test_task_json_list_and_errors(tmp_path):
    p = tmp_path / "l.json"
    p.write_text(json.dumps({"labels": ["a", "b", "c"]}))
    assert Task.load(p).n_labels == 3
    with pytest.raises(TaskError, match="at least 2"):
        Task.load("only")
    with pytest.raises(TaskError, match="Duplicate"):
        Task.load("a,a")
    with pytest.raises(UnknownLabelError, match="unknown label"):
        Task.from_dict({"labels": ["a", "b"], "examples": [{"text": "t", "label": "zz"}]})
    with pytest.raises(TaskError, match="does not exist"):
        Task.load(tmp_path / "missing.yaml")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_read_corpus_all_formats_report_empty_and_duplicates(tmp_path, suffix):
    texts = ["alpha", "beta", "", "  ", "alpha", "gamma, with comma\nand newline"]
    table = pa.table({"id": [f"r{i}" for i in range(6)], "text": texts, "label": ["a", "b", "a", "b", "a", "zz"]})
    path = tmp_path / f"c{suffix}"
    write_table(table, path)
    c = read_corpus(path, id_col="id", gold_col="label")
    assert c.texts == texts and list(c.ids) == [f"r{i}" for i in range(6)]
    rep = c.report(["a", "b"])
    assert (rep.n_rows, rep.n_empty, rep.n_duplicates, rep.n_unknown_gold) == (6, 2, 1, 1)
    assert c.valid_mask().tolist() == [True, True, False, False, False, True]


def test_iter_batches_streams_in_bounded_batches(tmp_path):
    n = 10_000
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(n)]}), tmp_path / "big.parquet", row_group_size=1000)
    sizes = [b.num_rows for b in iter_batches(tmp_path / "big.parquet", batch_size=700)]
    assert sum(sizes) == n and max(sizes) <= 700


def test_corpus_errors_are_clear(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus(tmp_path / "nope.csv")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(CorpusError, match="format"):
        read_corpus(tmp_path / "x.txt")
    (tmp_path / "c.csv").write_text("body\nhello\n")
    with pytest.raises(CorpusError, match=r"no column\(s\) \['text'\]"):
        read_corpus(tmp_path / "c.csv")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(CorpusError, match="Cannot read"):
        read_corpus(tmp_path / "bad.jsonl")
    (tmp_path / "dup.csv").write_text("id,text\n1,a\n1,b\n")
    with pytest.raises(CorpusError, match="duplicate ids"):
        read_corpus(tmp_path / "dup.csv", id_col="id")
