"""Cascade: threshold math on hand-computed cases, and end to end through the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from thrifty.cascade import ESCALATE_ALL, Cascade, agreement_curve, choose_threshold, wilson_interval
from thrifty.cli import app
from thrifty.corpus import read_corpus
from thrifty.errors import ThriftyError
from thrifty.task import Task
from thrifty.teachers.ledger import CachedTeacher, Ledger
from thrifty.teachers.replay import ReplayTeacher

# five validation rows; sorted by confidence the student/teacher matches are 0, 0, 1, 1, 1
CONF = np.array([0.9, 0.6, 0.8, 0.3, 0.7])
STUDENT = np.array([0, 1, 1, 2, 0])
TEACHER = np.array([0, 0, 1, 1, 0])


def test_agreement_curve_by_hand():
    thr, agree, esc = agreement_curve(CONF, STUDENT, TEACHER)
    np.testing.assert_allclose(thr, [0.0, 0.45, 0.65, 0.75, 0.85, ESCALATE_ALL])
    assert esc.tolist() == [0, 1, 2, 3, 4, 5]
    assert agree.tolist() == [3, 4, 5, 5, 5, 5]  # (k escalated + matches among the rest)


@pytest.mark.parametrize(
    "kw, thr, agree, rate, met",
    [
        ({"target_agreement": 0.8}, 0.45, 0.8, 0.2, True),
        ({"target_agreement": 0.9}, 0.65, 1.0, 0.4, True),
        ({"target_agreement": 0.6}, 0.0, 0.6, 0.0, True),  # the student alone already agrees 3/5
        ({"target_agreement": 0.9, "max_escalation_rate": 0.3}, 0.45, 0.8, 0.2, False),  # cap wins, says so
        ({"max_escalation_rate": 0.5}, 0.65, 1.0, 0.4, True),  # no target: as many as the cap allows
        # Wilson lower bounds: 3/5 -> 0.231, 4/5 -> 0.376, 5/5 -> 0.566
        ({"target_agreement": 0.5, "conservative": True}, 0.65, 1.0, 0.4, True),
    ],
)
def test_choose_threshold_by_hand(kw, thr, agree, rate, met):
    plan = choose_threshold(CONF, STUDENT, TEACHER, **kw)
    assert plan.threshold == pytest.approx(thr)
    assert plan.est_agreement == pytest.approx(agree)
    assert plan.est_escalation_rate == pytest.approx(rate)
    assert plan.target_met is met
    assert plan.student_agreement == pytest.approx(0.6)
    lo, hi = plan.agreement_ci
    assert lo <= plan.est_agreement <= hi


def test_the_ltt_guarantee_holds_where_the_point_estimate_does_not():
    """Over many validation draws from one population, the Learn-then-Test threshold meets the target on the
    population in >= 1 - delta of draws; the point estimate misses about half the time; with too few rows LTT
    escalates everything and says why."""
    rng = np.random.default_rng(0)
    n_pop, n_val, target = 20_000, 400, 0.95
    conf = rng.uniform(0.3, 1.0, n_pop)
    student = np.zeros(n_pop, dtype=int)
    teacher = np.where(rng.uniform(size=n_pop) < conf ** 2, 0, 1)  # the student is right more often when sure

    def realised(thr):  # agreement on the whole population at threshold thr
        return float(np.mean((conf < thr) | (teacher == 0)))

    met = {"ltt": 0, "estimate": 0}
    for _ in range(200):
        v = rng.choice(n_pop, n_val, replace=False)
        for g in met:
            plan = choose_threshold(conf[v], student[v], teacher[v], target_agreement=target, guarantee=g, delta=0.1)
            met[g] += realised(plan.threshold) >= target
    assert met["ltt"] >= 0.9 * 200 and met["estimate"] < 0.75 * 200, met
    few = choose_threshold(conf[:30], student[:30], teacher[:30], target_agreement=target, guarantee="ltt")
    assert few.threshold == ESCALATE_ALL and few.est_escalation_rate == 1.0
    assert any("cannot show agreement" in line and "thrifty label" in line for line in few.lines())
    with pytest.raises(ThriftyError, match="--guarantee must be one of"):
        choose_threshold(CONF, STUDENT, TEACHER, target_agreement=0.9, guarantee="maybe")


def test_ties_are_never_split():
    conf, match = np.array([0.5, 0.5, 0.9]), np.array([0, 1, 1])
    thr, agree, esc = agreement_curve(conf, match, np.ones(3, dtype=int))
    assert esc.tolist() == [0, 2, 3] and agree.tolist() == [2, 3, 3]
    plan = choose_threshold(conf, match, np.ones(3, dtype=int), target_agreement=0.7)
    assert plan.threshold == pytest.approx(0.7) and plan.est_escalation_rate == pytest.approx(2 / 3)


def test_wilson_interval_matches_the_formula():
    z, p, n = 1.959963984540054, 0.8, 5
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(4, 5) == pytest.approx((centre - half, centre + half))
    from scipy.stats import binomtest  # and scipy's, at the ends and other levels too

    for k, n, level in ((0, 60, 0.99), (60, 60, 0.99), (123, 1000, 0.9), (1, 2, 0.95)):
        ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
        assert wilson_interval(k, n, level) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_bad_requests_say_what_to_do():
    with pytest.raises(ThriftyError, match="target agreement or a maximum"):
        choose_threshold(CONF, STUDENT, TEACHER)
    with pytest.raises(ThriftyError, match="must be in"):
        choose_threshold(CONF, STUDENT, TEACHER, target_agreement=1.5)
    with pytest.raises(ThriftyError, match="No teacher-labelled"):
        choose_threshold(np.zeros(0), np.zeros(0), np.zeros(0), target_agreement=0.9)


def test_abstentions_keep_the_student_label_and_are_counted(tmp_path: Path, ag_news: Path):
    """Real replay teacher + real SQLite ledger: unknown texts are abstentions, never invented labels."""
    task = Task.load(ag_news / "labels.json")
    pool = read_corpus(ag_news / "pool.csv")
    teacher = ReplayTeacher.from_file(task, pool, ag_news / "teacher_qwen2.5-1.5b.csv")
    with Ledger(tmp_path / "l.sqlite") as led:
        casc = Cascade(CachedTeacher(teacher, led), task.labels, threshold=0.5, max_escalations=3)
        texts = [pool.texts[0], "a text the teacher never saw", pool.texts[1], pool.texts[2]]
        pred, flag = casc.apply(texts, np.array([3, 3, 3, 3]), np.array([0.1, 0.2, 0.9, 0.3]))
        recorded = teacher.label([pool.texts[0], pool.texts[2]])
        assert flag.tolist() == [True, False, False, True]
        assert pred[1] == 3 and pred[2] == 3  # abstention and confident row keep the student's label
        assert [task.labels[pred[0]], task.labels[pred[3]]] == [r.label for r in recorded]
        assert (casc.counts.escalated, casc.counts.abstained, casc.counts.capped) == (3, 1, 0)
        pred, flag = casc.apply(texts, np.array([3, 3, 3, 3]), np.array([0.1, 0.2, 0.9, 0.3]))
        assert not flag.any() and casc.counts.capped == 3  # --max-escalations reached: nothing more is sent
        assert led.stats().calls == 3


def test_cascade_end_to_end_through_the_ledger(tmp_path: Path, ag_news_run: Path):
    run, pool_csv = ag_news_run / "run", ag_news_run / "pool.csv"
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(_csv_to_table(pool_csv), corpus)
    with Ledger(run / "ledger.sqlite") as led:
        paid_before = led.stats().calls
    args = ["predict", str(run), str(corpus), "--cascade", "--target-agreement", "0.95", "-w", "1", "-q"]
    r1 = CliRunner().invoke(app, args + ["--out", str(tmp_path / "a.parquet"), "--summary-json", str(tmp_path / "a.json")])
    assert r1.exit_code == 0, r1.output
    assert "expected agreement with the teacher" in r1.output
    said = " ".join(r1.output.split())
    assert "with probability >= 0.90" in said  # the default: a guarantee (or why it sends everything)
    s1 = json.loads((tmp_path / "a.json").read_text())
    out = pq.read_table(tmp_path / "a.parquet").to_pydict()
    plan = s1["cascade"]
    assert plan["est_agreement"] >= 0.95 and plan["agreement_ci"][0] <= plan["est_agreement"]
    assert s1["escalated"] == out["source"].count("teacher") + s1["abstained"] > 0
    low = [c < plan["threshold"] for c in out["confidence"]]
    assert sum(low) == s1["escalated"]
    # teacher-sourced labels are the recorded teacher's; the rest are the student's argmax
    rec = _csv_to_table(pool_csv).column("teacher_label").to_pylist()
    assert all(rec[i] == out["label"][i] for i in range(len(rec)) if out["source"][i] == "teacher")
    with Ledger(run / "ledger.sqlite") as led:
        paid_first = led.stats().calls - paid_before
    assert s1["teacher_requests"] == paid_first and 0 < paid_first <= s1["escalated"]
    # second run: same corpus, fresh output: every escalation is a ledger hit, nothing paid
    r2 = CliRunner().invoke(app, args + ["--out", str(tmp_path / "b.parquet"), "--summary-json", str(tmp_path / "b.json")])
    assert r2.exit_code == 0, r2.output
    s2 = json.loads((tmp_path / "b.json").read_text())
    assert s2["teacher_requests"] == 0 and s2["escalated"] == s1["escalated"]
    with Ledger(run / "ledger.sqlite") as led:
        assert led.stats().calls - paid_before == paid_first
    assert pq.read_table(tmp_path / "b.parquet").equals(pq.read_table(tmp_path / "a.parquet"))


def test_cascade_needs_a_target(tmp_path: Path, ag_news_run: Path):
    r = CliRunner().invoke(app, ["predict", str(ag_news_run / "run"), str(ag_news_run / "pool.csv"), "--out",
                                 str(tmp_path / "o.parquet"), "--cascade"])
    assert r.exit_code == 2 and "--target-agreement" in r.output


def _csv_to_table(path: Path):
    import pyarrow.csv as pcsv

    return pcsv.read_csv(path)
