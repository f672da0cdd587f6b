"""Notebook use: corpora from Python objects, and a Distiller without out= that re-runs for free."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from thrifty import Corpus, Distiller, Task
from thrifty.errors import CorpusError
from thrifty.teachers import make_teacher


def _rows(ag_news: Path, n: int) -> list[dict[str, str]]:
    with open(ag_news / "pool.csv", newline="", encoding="utf-8") as f:
        return [r for _, r in zip(range(n), csv.DictReader(f))]


def test_corpus_from_texts_and_pandas(ag_news):
    pd = pytest.importorskip("pandas")
    rows = _rows(ag_news, 50)
    a = Corpus.from_texts([r["text"] for r in rows], gold=[r["label"] for r in rows])
    df = pd.DataFrame({"doc": [f"x{i}" for i in range(50)], "body": [r["text"] for r in rows], "y": [r["label"] for r in rows]})
    b = Corpus.from_pandas(df, text="body", id="doc", gold="y")
    assert a.texts == b.texts and a.gold == b.gold and list(b.ids[:2]) == ["x0", "x1"] and list(a.ids[:2]) == ["0", "1"]
    assert a.fingerprint() == b.fingerprint()
    with pytest.raises(CorpusError, match="no column"):
        Corpus.from_pandas(df, text="text")
    with pytest.raises(CorpusError, match="unique id"):
        Corpus.from_texts(["a", "b"], ids=[1, 1])


def test_corpus_from_hf_dataset_maps_class_ids_to_names():
    datasets = pytest.importorskip("datasets")  # optional: only when the user has it
    ds = datasets.Dataset.from_dict({"text": ["good", "bad"], "label": [1, 0]},
                                    features=datasets.Features({"text": datasets.Value("string"),
                                                                "label": datasets.ClassLabel(names=["neg", "pos"])}))
    c = Corpus.from_hf(ds, gold="label")
    assert c.texts == ["good", "bad"] and c.gold == ["pos", "neg"]


def test_distiller_without_out_keeps_a_persistent_ledger(ag_news, sim_server):
    """The second fit (a re-run notebook cell, a new Distiller object) sends no request at all."""
    from thrifty.paths import default_ledger_path

    rows = _rows(ag_news, 300)
    corpus = Corpus.from_texts([r["text"] for r in rows])
    task = Task.load(str(ag_news / "labels.json"))
    sim = sim_server(ag_news, noise=0.1)
    kw = dict(student="tfidf-lr", strategy="margin", budget=80, batch=20, seed_size=20, val_size=20)
    first = Distiller(task, make_teacher("openai:sim", task, base_url=sim.base_url), **kw).fit(corpus)
    paid = sim.stats()["requests"]
    assert paid >= 80 and default_ledger_path().exists()
    assert str(default_ledger_path()) == os.environ["THRIFTY_LEDGER"]  # tests never touch the user's cache
    again = Distiller(task, make_teacher("openai:sim", task, base_url=sim.base_url), **kw).fit(corpus)
    assert sim.stats()["requests"] == paid and again.cached.requests == 0 and again.cached.hits >= 80
    assert again.history_[-1]["val_agreement"] == first.history_[-1]["val_agreement"]


def test_report_of_a_python_run(ag_news, sim_server, tmp_path):
    """A run made from Python (no corpus file recorded) is reported with corpus=; without it, the
    page still has the curves, spend and history, and says what is missing."""
    from thrifty import build_report

    rows = _rows(ag_news, 200)
    corpus = Corpus.from_texts([r["text"] for r in rows], gold=[r["label"] for r in rows])
    task = Task.load(str(ag_news / "labels.json"))
    sim = sim_server(ag_news, noise=0.1)
    Distiller(task, make_teacher("openai:sim", task, base_url=sim.base_url), student="tfidf-lr", budget=60, batch=20,
              seed_size=20, val_size=20, out=tmp_path / "run").fit(corpus)
    full = build_report(tmp_path / "run", corpus=corpus)
    assert sorted(full.figures) == ["cascade", "confusion", "learning", "reliability", "spend"] and not full.notes
    assert full._repr_html_().startswith("<iframe sandbox srcdoc=") and "data-figure=&quot;cascade&quot;" in full._repr_html_()
    bare = build_report(tmp_path / "run", out=tmp_path / "bare.html")
    assert sorted(bare.figures) == ["learning", "spend"] and "corpus" in bare.notes[0]
    assert 'data-key="labels_total"><b>60</b>' in (tmp_path / "bare.html").read_text()
