"""`thrifty label`: the guarantee (Learn-then-Test), the cost projection and stopping rule, and the
whole job through the CLI against the simulated teacher over HTTP (a SIGKILL then --resume, the
dry run, --max-dollars, bad input)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import sigkill_when, write_recorded_csv
from thrifty.cascade import ESCALATE_ALL, choose_threshold
from thrifty.labelling import ltt_threshold, project, stop_buying, stopping_round

POOL_ROWS = 800
AUDIT, VAL, SEED, BATCH, MAX_TRAIN = 60, 100, 40, 40, 200


# ---- the guarantee -------------------------------------------------------------------------------
def _population(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidences and whether the student agrees with the teacher; agreement rises with confidence
    but the student is over-confident (P(agree | c) = c**2), as small students often are."""
    c = rng.uniform(0.3, 1.0, n)
    return c, rng.random(n) < c**2


def _true_agreement(c: np.ndarray, ok: np.ndarray, t: float) -> float:
    return float(np.mean((c < t) | ok))


def test_ltt_meets_the_target_in_at_least_1_minus_delta_of_draws_and_the_point_estimate_does_not():
    rng = np.random.default_rng(0)
    pop_c, pop_ok = _population(rng, 200_000)
    target, delta, n = 0.95, 0.1, 300
    met_ltt, met_point, esc = [], [], []
    for _ in range(300):
        i = rng.integers(0, len(pop_c), n)
        c, ok = pop_c[i], pop_ok[i]
        student, teacher = np.zeros(n, int), np.where(ok, 0, 1)
        ch = ltt_threshold(c, student, teacher, target, delta)
        met_ltt.append(_true_agreement(pop_c, pop_ok, ch.threshold) >= target)
        esc.append(float(np.mean(pop_c < ch.threshold)))
        pt = choose_threshold(c, student, teacher, target_agreement=target)
        met_point.append(_true_agreement(pop_c, pop_ok, pt.threshold) >= target)
    assert np.mean(met_ltt) >= 0.9, np.mean(met_ltt)
    assert np.mean(met_point) < 0.75, np.mean(met_point)  # why a bound is needed at all
    assert 0.2 < np.median(esc) < 1.0  # it does not get there by escalating everything


def test_ltt_escalates_everything_when_the_calibration_sample_cannot_support_the_target():
    c = np.linspace(0.5, 1.0, 20)
    ch = ltt_threshold(c, np.zeros(20, int), np.zeros(20, int), 0.95, 0.1)  # 20 rows: 0.95**20 > 0.1
    assert ch.threshold == ESCALATE_ALL and ch.escalation_rate == 1.0
    ch = ltt_threshold(np.linspace(0.5, 1.0, 200), np.zeros(200, int), np.zeros(200, int), 0.95, 0.1)
    assert ch.threshold == 0.0 and ch.escalation_rate == 0.0  # a student that always agrees escalates nothing


def test_projection_and_the_stopping_rule():
    p = project(10_000, audit=300, validation=500, training=200, escalation_rate=0.25, dollars_per_call=0.01)
    assert p.calls == pytest.approx(1000 + 0.25 * 9000) and p.dollars == pytest.approx(p.calls * 0.01)
    assert p.fraction_of_teacher_everything == pytest.approx(p.calls / 10_000)
    calls = [5000, 4000, 3500, 3600, 3550, 3400]
    assert not stop_buying(calls[:3]) and not stop_buying(calls[:4])
    assert stop_buying(calls[:5])  # two batches without going below 3500
    assert stopping_round(calls) == 4
    assert stopping_round([5, 4, 3, 2]) == 3  # never fires: the last round


def test_teacher_doubt_says_where_the_students_disagreements_fall():
    """The summary's ``teacher_doubt``: shares by the teacher's own confidence, and the labels it hesitated between."""
    from thrifty.labelling.doubt import doubt_line, teacher_doubt
    from thrifty.teachers.base import TeacherLabel

    labels = ["a", "b", "c"]

    def ans(label: str, p: list[float]) -> TeacherLabel:
        return TeacherLabel(label, np.asarray(p), max(p))

    sure = [ans("a", [0.95, 0.03, 0.02])] * 30  # the student agrees on 28 of these
    unsure = [ans("b", [0.4, 0.5, 0.1])] * 8 + [ans("c", [0.05, 0.35, 0.6])] * 2  # and on 2 of these
    student = np.asarray([0] * 28 + [1] * 2 + [0] * 7 + [1] + [2, 1])
    d = teacher_doubt(sure + unsure, student, labels)
    assert d["n"] == 40 and d["unsure_share"] == 0.25 and d["disagreements"] == 2 + 8
    assert d["student_agreement"] == {"teacher_unsure": 0.2, "teacher_sure": round(28 / 30, 4)}
    assert d["share_of_disagreements_on_unsure"] == 0.8
    assert d["unsure_between"] == [{"labels": ["a", "b"], "docs": 8}, {"labels": ["b", "c"], "docs": 2}]
    line = doubt_line(d)
    assert line.startswith("10 of 40 docs; 80% of those among the 25%") and "between a / b (8), b / c (2)" in line
    # a teacher without distributions (every confidence 1 or none), or too few answers: nothing to say
    assert teacher_doubt([TeacherLabel("a", np.eye(3)[0], 1.0)] * 40, np.zeros(40, int), labels) is None
    assert teacher_doubt([TeacherLabel("a", None, None)] * 40, np.zeros(40, int), labels) is None
    assert teacher_doubt(unsure, student[30:], labels) is None


def test_samples_and_the_label_cap_grow_with_the_corpus_as_n_to_the_two_thirds():
    from thrifty.labelling.job import LabelConfig

    cfg = LabelConfig()
    assert cfg.sizes(2_000) == (100, 200) and cfg.sizes(8_000) == (400, 400)  # small corpora: 5%, as before
    assert cfg.sizes(20_000)[1] == 1000 and cfg.train_cap(20_000) == 1000
    vals = [cfg.sizes(n)[1] for n in (20_000, 100_000, 1_000_000, 10**8)]
    caps = [cfg.train_cap(n) for n in (5_000, 20_000, 100_000, 1_000_000, 10**8)]
    assert vals == sorted(vals) and vals[1] == round(1000 * 5 ** (2 / 3)) and vals[-1] == 5000
    assert caps == sorted(caps) and caps[:2] == [1000, 1000] and caps[-1] == 5000
    assert 0.004 < cfg.sizes(1_000_000)[1] / 1_000_000 < 0.006  # a vanishing share of a large corpus
    pinned = LabelConfig(val_size=300, max_train_labels=120)
    assert pinned.sizes(10**6)[1] == 300 and pinned.train_cap(10**6) == 120


# ---- the whole job against the simulated teacher --------------------------------------------------
def write_csv(path: Path, rows: list[dict[str, str]], fields: tuple[str, ...] = ("id", "text")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def pool(ag_news, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("label_pool")
    with open(ag_news / "pool.csv", newline="", encoding="utf-8") as f:
        rows = [r for _, r in zip(range(POOL_ROWS), csv.DictReader(f))]
    write_csv(d / "pool.csv", [{"id": f"doc{i}", "text": r["text"]} for i, r in enumerate(rows)])
    write_csv(d / "gold.csv", rows, ("text", "label"))  # what the sim answers from
    shutil.copy(ag_news / "labels.json", d / "labels.json")
    return d


def label_cmd(pool: Path, sim, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "thrifty", "label", str(pool / "pool.csv"), "--labels", str(pool / "labels.json"),
            "--teacher", "openai:sim", "--base-url", sim.base_url, "--id-col", "id", "--student", "tfidf-svm",
            "--audit-size", str(AUDIT), "--val-size", str(VAL), "--seed-size", str(SEED), "--batch", str(BATCH),
            "--max-train-labels", str(MAX_TRAIN), "--target-agreement", "0.9", "--price-in", "1", "--price-out", "1",
            "--out", str(out), "--quiet", *extra]


def _env() -> dict[str, str]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")  # 2 busy cores: no BLAS oversubscription
    env.pop("OPENAI_API_KEY", None)
    return env


def run(cmd: list[str], code: int = 0) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env())
    assert r.returncode == code, f"exit {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    return r


def test_label_kill_then_resume_pays_each_text_once_and_labels_every_document(sim_server, pool, tmp_path):
    sim = sim_server(pool / "gold.csv", noise=0.1, latency=0.002)
    out = tmp_path / "labelled.parquet"
    kill_after = AUDIT + VAL + SEED + BATCH // 2  # in the middle of the first bought batch
    sim.hold_after(kill_after)
    proc = subprocess.Popen(label_cmd(pool, sim, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env())
    sigkill_when(proc, sim, lambda: sim.stats()["answered"] == kill_after and sim.stats()["requests"] > kill_after,
                 f"{kill_after} answers", settle=0.3)  # settle: the last answers reach the ledger
    assert not out.exists()
    refused = invoke(label_cmd(pool, sim, out), code=2)  # an existing job is continued only on purpose
    assert "--resume" in refused and sim.stats()["answered"] == kill_after
    invoke(label_cmd(pool, sim, out, "--resume"))
    st = sim.stats()
    assert st["texts_answered_twice"] == 0, "a text was paid for twice"
    summary = json.loads((Path(str(out) + ".thrifty") / "summary.json").read_text())
    with open(Path(str(out) + ".thrifty") / "history.csv", newline="", encoding="utf-8") as f:
        assert [int(r["train_labels"]) for r in csv.DictReader(f)] == [h["train_labels"] for h in summary["history"]]
    calls = summary["teacher_calls"]
    assert (calls["audit"], calls["validation"]) == (AUDIT, VAL)
    assert SEED + BATCH <= calls["training"] <= MAX_TRAIN
    assert calls["total"] == st["texts_answered"]  # every paid answer is accounted for, once
    assert summary["dollars"]["spent"] < summary["dollars"]["teacher_everything"]
    # the sim states a confidence: the student's disagreements on the audit, by it; the cascade escalates some of them
    doubt, est = summary["teacher_doubt"], summary["estimated_agreement"]["cascade_on_audit"]
    assert doubt["n"] == est["n"] and 0 < doubt["unsure_share"] < 1
    assert doubt["disagreements"] >= round(est["n"] * (1 - est["agreement"]))
    t = pq.read_table(out).to_pydict()
    assert t["id"] == [f"doc{i}" for i in range(POOL_ROWS)]
    labels = json.loads((pool / "labels.json").read_text())
    labels = labels if isinstance(labels, list) else labels.get("labels", labels)
    assert set(t["label"]) <= set(labels)
    assert t["tier"].count("teacher") == calls["total"] and set(t["tier"]) == {"student", "teacher"}
    # realised agreement with the teacher over every document vs the audit estimate
    with open(pool / "pool.csv", newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    agree = float(np.mean([lab == sim.answer_for(x) for lab, x in zip(t["label"], texts)]))
    est = summary["estimated_agreement"]["corpus"]
    assert agree >= 0.9, agree
    assert est["ci95"][0] - 0.02 <= agree <= est["ci95"][1] + 0.02, (agree, est)
    # a third run of the finished job pays nothing
    before = sim.stats()["requests"]
    invoke(label_cmd(pool, sim, out, "--resume"))
    assert sim.stats()["requests"] == before


def invoke(cmd: list[str], code: int = 0):
    """The same command line in this process (no interpreter start-up); the teacher is still the sim over HTTP."""
    from typer.testing import CliRunner

    from thrifty.cli import app

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        r = CliRunner().invoke(app, cmd[3:])  # drop `python -m thrifty`
    assert r.exit_code == code, f"exit {r.exit_code}\n{r.output[-3000:]}"
    return " ".join(r.output.split())


def test_dry_run_pays_only_the_audit_and_prints_the_projection(sim_server, pool, tmp_path):
    sim = sim_server(pool / "gold.csv", noise=0.1)
    out = invoke(label_cmd(pool, sim, tmp_path / "l.csv", "--dry-run"))
    assert sim.stats()["answered"] == AUDIT
    assert "plan (dry run)" in out and "escalations" in out and "teacher on everything" in out
    assert "of the audit with < 0.7 confidence" in out  # the sim states its confidence (logprobs)
    assert not (tmp_path / "l.csv").exists()
    # a job.json written before the sizes grew with the corpus (its sizes in "config", no "samples") resumes
    job = tmp_path / "l.csv.thrifty" / "job.json"
    saved = json.loads(job.read_text())
    saved["config"].update(saved.pop("samples"))
    job.write_text(json.dumps(saved))
    invoke(label_cmd(pool, sim, tmp_path / "l.csv", "--dry-run", "--resume"))
    assert sim.stats()["answered"] == AUDIT  # the same job: its audit came from the ledger
    # a label cap beyond what the corpus holds is planned as what it holds; at 10^6 documents, the grown cap
    out = invoke(label_cmd(pool, sim, tmp_path / "m.csv", "--dry-run", "--max-train-labels", "5000"))
    row = " ".join(next(line for line in out.splitlines() if "training labels (at most)" in line).split())
    assert f"│ {POOL_ROWS - AUDIT - VAL} │ 5,000 │" in row, row
    # resuming with another option says which one, and what the job used
    r = run(label_cmd(pool, sim, tmp_path / "m.csv", "--resume", "--max-train-labels", "300"), code=2)
    assert "It used --max-train-labels 5000 (now 300)." in " ".join(r.stderr.split()), r.stderr


def test_max_dollars_binds_and_says_what_the_target_would_cost(sim_server, pool, tmp_path):
    import re

    sim = sim_server(pool / "gold.csv", noise=0.1)
    plan = invoke(label_cmd(pool, sim, tmp_path / "plan.csv", "--dry-run"))
    per_call = float(re.search(r"Spent \$([0-9.]+) on the audit", plan).group(1)) / AUDIT
    assert per_call > 0
    before = sim.stats()["requests"]
    err = invoke(label_cmd(pool, sim, tmp_path / "l.csv", "--max-dollars", f"{per_call * AUDIT / 2:.6f}"), code=1)
    assert "--max-dollars" in err and "audit" in err, err
    assert sim.stats()["requests"] == before + 1  # one probe answer gives the price; the audit is not bought
    before = sim.stats()["requests"]
    cap = per_call * (AUDIT + VAL + SEED + BATCH) * 1.15  # room for the labels, not for the escalations
    err = invoke(label_cmd(pool, sim, tmp_path / "l2.csv", "--max-dollars", f"{cap:.6f}"), code=1)
    assert "Reaching agreement 0.9 needs" in err and "teacher-everything" in err, err
    assert sim.stats()["requests"] - before <= AUDIT + VAL + SEED + BATCH  # stopped before the escalations
    # as the message says: a larger cap and --resume finish the job, paying nothing twice
    twice = sim.stats()["texts_answered_twice"]  # the other jobs above had their own ledgers
    invoke(label_cmd(pool, sim, tmp_path / "l2.csv", "--max-dollars", "1000", "--resume"))
    assert (tmp_path / "l2.csv").exists() and sim.stats()["texts_answered_twice"] == twice


def test_bad_input_gets_one_clear_line_and_pays_nothing(sim_server, pool, tmp_path):
    sim = sim_server(pool / "gold.csv")
    err = invoke(label_cmd(pool, sim, tmp_path / "l.csv", "--audit-size", "5000"), code=2)
    assert "distinct non-empty documents" in err and sim.stats()["requests"] == 0
    err = invoke(label_cmd(pool, sim, tmp_path / "l.txt"), code=2)
    assert "format" in err and sim.stats()["requests"] == 0
    bad = sim_server(pool / "gold.csv", abstain=0.8)
    err = invoke(label_cmd(pool, bad, tmp_path / "l.csv"), code=1)
    assert "abstained on" in err
    assert bad.stats()["answered"] == AUDIT  # stopped after the audit


def test_demo_label_runs_the_job_on_the_shipped_corpus(sim_server, tmp_path):
    """The README's demo path, with the simulated teacher standing in for the local LLM."""
    from importlib import resources

    with resources.as_file(resources.files("thrifty").joinpath("data", "banking77_demo")) as d:
        sim = sim_server(d / "pool.csv", noise=0.05)
        n = sum(1 for _ in csv.DictReader(open(d / "pool.csv", newline="", encoding="utf-8")))
    out = tmp_path / "demo.csv"
    text = invoke([sys.executable, "-m", "thrifty", "demo-label", "--teacher", "openai:sim", "--base-url", sim.base_url,
                   "--out", str(out)])
    assert f"labelled {n} messages" in text and "agreement with the teacher" in text and "to ask the teacher about all" in text
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n and {r["tier"] for r in rows} <= {"student", "teacher"}
    assert sim.stats()["texts_answered_twice"] == 0
    doubt = json.loads((tmp_path / "demo.csv.thrifty" / "summary.json").read_text())["teacher_doubt"]
    assert doubt["n"] >= 20 and "student disagrees with the teacher" in text


def test_python_api_with_a_recorded_teacher_writes_jsonl_and_a_history(tmp_path, caplog):
    """`thrifty.label(...)` on 900 rows of sst2_llama3 (a recorded Llama-3 in the corpus's columns); its progress
    goes to the ``thrifty.label`` logger."""
    import logging

    import thrifty
    from conftest import dataset_path

    src = dataset_path("sst2_llama3")
    rows = write_recorded_csv("sst2_llama3", lambda rows: rows[:900], tmp_path / "c.csv")
    with caplog.at_level(logging.INFO, logger="thrifty.label"):
        res = thrifty.label(tmp_path / "c.csv", str(src / "labels.json"), "replay", out=tmp_path / "l.jsonl",
                            target_agreement=0.9, student="tfidf-svm", audit_size=60, val_size=150, seed_size=40,
                            batch=40, max_train_labels=200)
    said = [r.getMessage() for r in caplog.records if r.name == "thrifty.label"]
    assert any(m.startswith("validation: asking the teacher about 150") for m in said)
    assert any(m.startswith("cascade: threshold") for m in said)
    s = res.summary
    assert len(res.labels) == 900 and s["n_docs"] == 900
    assert s["teacher_calls"]["total"] == sum(s["teacher_calls"][k] for k in ("audit", "validation", "training", "escalations"))
    assert s["history"] and all("projected_calls" in h and "projected_pct_at_1e6" in h for h in s["history"])
    assert s["history"][-1]["stop_reason"] == s["stop_reason"]
    lines = (tmp_path / "l.jsonl").read_text().splitlines()
    assert len(lines) == 900 and set(json.loads(lines[0])) == {"id", "label", "confidence", "tier"}
    # realised agreement with the recording over every document it answered
    teacher = {r["text"]: r["teacher_label"] for r in rows}
    ok = [(lab, teacher[r["text"]]) for lab, r in zip(res.labels, rows) if teacher[r["text"]]]
    assert np.mean([a == b for a, b in ok]) >= 0.9
