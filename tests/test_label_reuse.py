"""`thrifty label NEW --from-job JOB.thrifty`: new documents through a finished job's students, fast tier and
guaranteed threshold, the escalations paid through the job's ledger, against the simulated teacher over HTTP."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import dataset_path
from test_label import invoke, write_csv as _write

JOB_ROWS, NEW_ROWS = 800, 600
OPTS = ["--id-col", "id", "--price-in", "1", "--price-out", "1", "--quiet"]


@pytest.fixture(scope="module")
def corpora(ag_news, tmp_path_factory) -> Path:
    """The job's corpus (800 ag_news rows), 600 new rows from the same pool (plus an empty text and a repeat),
    and the gold the simulated teacher answers from."""
    d = tmp_path_factory.mktemp("reuse")
    with open(ag_news / "pool.csv", newline="", encoding="utf-8") as f:
        rows = [r for _, r in zip(range(JOB_ROWS + NEW_ROWS), csv.DictReader(f))]
    _write(d / "job.csv", [{"id": f"doc{i}", "text": r["text"]} for i, r in enumerate(rows[:JOB_ROWS])])
    new = [{"id": f"new{i}", "text": r["text"]} for i, r in enumerate(rows[JOB_ROWS:])]
    _write(d / "new.csv", new + [{"id": "empty", "text": " "}, {"id": "again", "text": new[0]["text"]}])
    _write(d / "gold.csv", rows, ("text", "label"))
    shutil.copy(ag_news / "labels.json", d / "labels.json")
    return d


def _cmd(corpus: Path, sim, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "thrifty", "label", str(corpus), "--teacher", "openai:sim", "--base-url",
            sim.base_url, "--out", str(out), *OPTS, *extra]


@pytest.fixture(scope="module")
def sim_job(corpora, tmp_path_factory):
    """A finished label job (tfidf-lr behind a fast tier) whose teacher is the simulated server: ``(sim, job dir)``."""
    from thrifty.testing.sim import SimServer

    sim = SimServer.from_path(corpora / "gold.csv", noise=0.1, latency=0.001).start()
    job_out = tmp_path_factory.mktemp("job") / "job.parquet"
    try:
        invoke(_cmd(corpora / "job.csv", sim, job_out, "--labels", str(corpora / "labels.json"), "--student", "tfidf-lr",
                    "--audit-size", "60", "--val-size", "100", "--seed-size", "40", "--batch", "40",
                    "--max-train-labels", "200", "--target-agreement", "0.9", "--pool-size", "500",
                    "--fast-student", "tfidf[char=false]-lr", "--fast-tolerance", "1"))
        yield sim, Path(str(job_out) + ".thrifty")
    finally:
        sim.stop()


def test_new_documents_go_through_the_jobs_tiers_and_only_the_unsure_ones_are_paid(sim_job, corpora, tmp_path):
    sim, job = sim_job
    js = json.loads((job / "summary.json").read_text())
    assert "fast" in js["tiers"], "the job should have a fast tier in front of its student"
    new_out, before = tmp_path / "new.parquet", sim.stats()["requests"]

    # options that shape a new job, another target, another label set, a job that is not one: refused, nothing paid
    for extra, words in ((["--student", "tfidf-lr"], "--student"), (["--target-agreement", "0.95"], "guarantees"),
                         (["--labels", "a,b"], "label set")):
        err = invoke(_cmd(corpora / "new.csv", sim, new_out, "--from-job", str(job), *extra), code=2)
        assert words in err, err
    err = invoke(_cmd(corpora / "new.csv", sim, new_out, "--from-job", str(tmp_path)), code=2)
    assert "not a `thrifty label` job" in err
    import thrifty
    from thrifty.errors import ThriftyError

    for labels, kw, words in ((None, {"student": "tfidf-lr"}, "shape a new job.*student"), ("a,b", {}, "label set")):
        with pytest.raises(ThriftyError, match=words):  # the same refusals from Python
            thrifty.label(corpora / "new.csv", labels, from_job=job, **kw)
    # the dry run runs the students (free) and says what the teacher would cost; the cap binds before paying
    dry = invoke(_cmd(corpora / "new.csv", sim, new_out, "--from-job", str(job), "--dry-run"))
    assert "would go to the teacher" in dry and "Nothing was paid" in dry, dry
    err = invoke(_cmd(corpora / "new.csv", sim, new_out, "--from-job", str(job), "--max-dollars", "0.000001"), code=1)
    assert "--max-dollars" in err and "Nothing was paid" in err, err
    assert sim.stats()["requests"] == before and not new_out.exists()

    # no teacher options: the job's teacher is rebuilt as job.json saved it (server, prices; never a key)
    assert json.loads((job / "job.json").read_text())["teacher_recipe"]["base_url"] == sim.base_url
    invoke([sys.executable, "-m", "thrifty", "label", str(corpora / "new.csv"), "--out", str(new_out), "--id-col", "id",
            "--quiet", "--from-job", str(job), "--audit-size", "50"])
    s = json.loads(Path(str(new_out) + ".summary.json").read_text())
    calls = s["teacher_calls"]
    paid = sim.stats()["requests"] - before
    assert paid == calls["total"] == sum(s["paid_this_invocation"].values()) > 0
    assert calls["escalations"] < 0.8 * NEW_ROWS and calls["audit"] == 50
    assert s["threshold"] == js["threshold"] and s["drift_warning"] is None
    assert 0 < s["dollars"]["spent"] < s["dollars"]["teacher_everything"]
    t = pq.read_table(new_out).to_pydict()
    assert t["id"] == [f"new{i}" for i in range(NEW_ROWS)] + ["empty", "again"]
    assert t["tier"][-2] == "empty" and t["label"][-2] is None
    assert (t["label"][-1], t["tier"][-1]) == (t["label"][0], t["tier"][0])  # a repeat gets its first copy's answer
    tiers = t["tier"][:NEW_ROWS]
    assert {"fast", "teacher"} <= set(tiers) <= {"fast", "student", "teacher"} and tiers.count("teacher") == calls["total"]
    assert s["tiers"]["fast"]["docs_read"] == NEW_ROWS  # every distinct non-empty text, once
    assert sum(s["tiers"][k]["docs"] for k in ("fast", "student", "teacher")) == NEW_ROWS + 1  # + the repeat
    # the guarantee carries over to documents drawn like the job's corpus; the audit here estimates it honestly
    with open(corpora / "new.csv", newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)][:NEW_ROWS]
    agree = float(np.mean([lab == sim.answer_for(x) for lab, x in zip(t["label"], texts)]))
    assert agree >= 0.88, agree
    est = s["estimated_agreement"]["new_docs_audit"]
    assert est["n"] == 50 and est["ci95"][0] - 0.02 <= agree <= est["ci95"][1] + 0.02, (agree, est)
    assert s["teacher_doubt"]["n"] == 50 and s["teacher_doubt"]["disagreements"] >= round(50 * (1 - est["agreement"]))
    # the same command again pays nothing: every answer is in the job's ledger
    twice_before = sim.stats()["requests"]
    invoke(_cmd(corpora / "new.csv", sim, new_out, "--from-job", str(job), "--audit-size", "50"))
    assert sim.stats()["requests"] == twice_before and sim.stats()["texts_answered_twice"] == 0

    # documents not drawn like the job's corpus (questions, not news): the escalation rate says so
    q = [{"id": f"q{i}", "text": r["text"]} for i, r in
         zip(range(300), csv.DictReader(open(dataset_path("trec6") / "pool.csv", newline="", encoding="utf-8")))]
    drift = invoke(_cmd(_write(tmp_path / "questions.csv", q), sim, tmp_path / "q.parquet", "--from-job", str(job),
                        "--dry-run"))
    assert "may not be drawn like the job's corpus" in drift, drift


def test_serve_cascade_on_a_label_job_uses_its_tiers_threshold_and_ledger(sim_job, corpora):
    """`thrifty serve JOB --cascade --max-dollars X`: the job's fast tier and final student answer, what scores below
    the job's own threshold goes to its teacher (rebuilt from job.json) through its ledger; another guarantee is refused."""
    pytest.importorskip("uvicorn")
    import httpx
    from test_serve import running

    from thrifty.errors import ThriftyError
    from thrifty.labelling.reuse import JobStudents
    from thrifty.serve import build_server_app

    sim, job = sim_job
    js = json.loads((job / "summary.json").read_text())
    for kw, words in (({"target_agreement": 0.95}, "--target-agreement 0.95"), ({"delta": 0.05}, "--delta 0.05"),
                      ({"conservative": True}, "--guarantee wilson"), ({}, "--max-dollars")):
        with pytest.raises(ThriftyError, match=words):
            build_server_app(job, cascade=True, **{"max_dollars": 1.0, **kw} if kw else {})
    with open(corpora / "new.csv", newline="", encoding="utf-8") as f:
        rows = [r["text"] for r in csv.DictReader(f)]
    texts, more = rows[300:364], rows[364:428]  # not the rows the --from-job test paid for
    _, score, kept = JobStudents(job).tiered_proba(texts)
    low = score < js["threshold"]["threshold"]
    unsure = int(low.sum())
    assert (kept & ~low).any() and 0 < unsure < len(texts)
    app, plan = build_server_app(job, cascade=True, max_dollars=100.0, target_agreement=0.9)  # ~$0.1 a call: no cap
    assert plan.threshold == js["threshold"]["threshold"] and "guarantee: agreement >= 0.9" in plan.lines()[-1]
    before = sim.stats()["requests"]
    with running(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        first = c.post("/v1/classify", json={"texts": texts}).json()["results"]
        again = c.post("/v1/classify", json={"texts": texts}).json()["results"]
        paid_for_both = sim.stats()["requests"] - before
        health = c.get("/health").json()["cascade"]
        assert (health["texts_seen"], health["escalated"], health["drift_warning"]) == (128, 2 * unsure, None)
        # 128 distinct texts drawn like the job's corpus (past the 100 the check needs): in line with the job
        assert c.post("/v1/classify", json={"texts": more}).status_code == 200
        assert c.get("/health").json()["cascade"]["drift_warning"] is None
        # one unsure text resent 250 times counts once in the drift window
        # (counted each time, it made 374 escalated of 442: a warning)
        resent = texts[int(np.flatnonzero(low)[0])]
        assert c.post("/v1/classify", json={"texts": [resent] * 250}).status_code == 200
        health = c.get("/health").json()["cascade"]
        assert health["texts_seen"] == 442 and health["drift_warning"] is None, health
        assert "thrifty_drift 0.0" in c.get("/metrics").text
        # texts not drawn like the job's corpus (questions, not news): /health and the gauge say so
        with open(dataset_path("trec6") / "pool.csv", newline="", encoding="utf-8") as f:
            questions = [r["text"] for _, r in zip(range(256), csv.DictReader(f))]
        assert c.post("/v1/classify", json={"texts": questions, "probabilities": False}).status_code == 200
        drift = c.get("/health").json()["cascade"]["drift_warning"]
        assert drift and "may not be drawn like the job's corpus" in drift, drift
        assert "thrifty_drift 1.0" in c.get("/metrics").text
    tiers = [r["tier"] for r in first]
    assert tiers.count("teacher") == unsure and tiers.count("fast") == int((kept & ~low).sum())
    assert all(r["label"] == sim.answer_for(x) for r, x in zip(first, texts) if r["tier"] == "teacher")
    assert again == first and paid_for_both <= unsure  # the second time from the ledger
