"""The run report (opened in real headless Chromium), ledger export/show, the audit and human corrections.

One real run feeds every test: `thrifty distill` against the simulated OpenAI teacher over HTTP
(10% label noise, priced), with gold labels and a test file, on 800 ag_news pool rows.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from thrifty.cli import app

POOL_ROWS, BUDGET = 800, 150
CHROMIUM = Path("/usr/bin/chromium")


def invoke(*args: str):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def sim(ag_news):
    from thrifty.testing.sim import SimServer

    with SimServer.from_path(ag_news, noise=0.15) as s:
        yield s


@pytest.fixture(scope="module")
def run_dir(ag_news, sim, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("report_run")
    with open(ag_news / "pool.csv", newline="", encoding="utf-8") as f:
        rows = [r for _, r in zip(range(POOL_ROWS), csv.DictReader(f))]
    with open(d / "pool.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["doc_id", "text", "label"])
        w.writeheader()
        w.writerows({"doc_id": f"d{i}", **r} for i, r in enumerate(rows))
    with open(ag_news / "test.csv", newline="", encoding="utf-8") as f:
        test = [r for _, r in zip(range(400), csv.DictReader(f))]
    with open(d / "test.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(test[0]))
        w.writeheader()
        w.writerows(test)
    shutil.copy(ag_news / "labels.json", d / "labels.json")
    invoke("distill", d / "pool.csv", "--teacher", "openai:sim", "--base-url", sim.base_url, "--price-in", "0.15",
           "--price-out", "0.6", "--budget", BUDGET, "--batch", 25, "--val-size", 40, "--student", "tfidf-lr",
           "--id-col", "doc_id", "--gold-col", "label", "--eval", d / "test.csv", "--out", d / "run", "--quiet")
    return d / "run"


@pytest.fixture(scope="module")
def report_path(run_dir) -> Path:
    invoke("report", run_dir)
    return run_dir / "report.html"


def history_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "history.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_report_is_one_self_contained_file(report_path):
    page = report_path.read_text(encoding="utf-8")
    assert "<script" not in page and "<link" not in page  # nothing to fetch, nothing to run
    assert "http://" not in page and "https://" not in page
    figs = [f for f in ("learning", "spend", "confusion", "reliability", "cascade") if f'data-figure="{f}"' in page]
    assert len(figs) == 5, figs
    assert 'id="disagreements"' in page and 'id="model-card"' in page and 'id="config"' in page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/test.sh installs it)")
def test_report_renders_in_headless_chromium(report_path, run_dir, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        page.goto(report_path.resolve().as_uri())
        page.wait_for_load_state("load")
        figs = page.eval_on_selector_all(
            "figure[data-figure] img",
            "els => els.map(e => [e.closest('figure').dataset.figure, e.complete, e.naturalWidth, e.naturalHeight])")
        cells = page.eval_on_selector_all(
            "#history tr", "trs => trs.slice(1).map(tr => Array.from(tr.querySelectorAll('td')).map(td => [td.dataset.col, td.textContent]))")
        cards = dict(page.eval_on_selector_all("#summary .card", "cs => cs.map(c => [c.dataset.key, c.querySelector('b').textContent])"))
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == [] and requests == []
    assert sorted(f[0] for f in figs) == ["cascade", "confusion", "learning", "reliability", "spend"]
    assert all(ok and w > 100 and h > 100 for _, ok, w, h in figs), figs
    hist = history_rows(run_dir)
    assert [dict(r) for r in cells] == hist  # every number on the page is history.csv's
    assert cards["labels_total"] == hist[-1]["labels_total"] == str(BUDGET)
    assert cards["test_accuracy"] == hist[-1]["test_accuracy"] and cards["dollars"] == hist[-1]["dollars"]
    assert (tmp_path / "report.png").stat().st_size > 20_000


def test_ledger_export_one_row_per_paid_answer(run_dir, tmp_path):
    from thrifty.teachers.ledger import Ledger

    state = json.loads((run_dir / "state.json").read_text())
    for ext in ("parquet", "csv", "jsonl"):
        invoke("ledger", "export", run_dir, "-o", tmp_path / f"labels.{ext}")
    rows = pq.read_table(tmp_path / "labels.parquet").to_pylist()
    with open(tmp_path / "labels.csv", newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == len(rows)
    purposes = {p: sum(r["purpose"] == p for r in rows) for p in ("validation", "seed", "selected")}
    assert purposes == {"validation": len(state["val_idx"]), "seed": 50, "selected": len(state["train_idx"]) - 50}
    with Ledger(run_dir / "ledger.sqlite") as led:
        st = led.stats()
    assert len(rows) == st.calls == BUDGET
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(st.dollars)
    assert sum(r["prompt_tokens"] for r in rows) == st.prompt_tokens
    by_id = {r["id"]: r for r in rows}
    pool = {f"d{i}": t for i, t in enumerate(r["text"] for r in csv.DictReader(open(run_dir.parent / "pool.csv", encoding="utf-8")))}
    assert all(pool[i] == r["text"] and len(r["probs"]) == 4 and r["parse"] and r["raw"] for i, r in by_id.items())
    assert {r["round"] for r in rows if r["purpose"] == "selected"} == set(range(1, len(state["history"])))


def test_ledger_show_by_id_and_by_text(run_dir):
    state = json.loads((run_dir / "state.json").read_text())
    i = state["val_idx"][0]
    out = json.loads(invoke("ledger", "show", run_dir, "--id", f"d{i}").output)
    assert out["purpose"] == "validation" and out["row"] == i
    again = json.loads(invoke("ledger", "show", run_dir, "--text", out["text"]).output)
    assert again == out
    res = CliRunner().invoke(app, ["ledger", "show", str(run_dir), "--text", "never labelled"])
    assert res.exit_code == 2 and "No answer" in res.output


def test_audit_ranks_wrong_teacher_labels_first_and_corrections_are_used(run_dir, tmp_path, sim):
    """The sim's wrong answers should gather at the top of the audit; imported corrections replace
    the teacher's answers on resume (without a request) and show in the report and the export."""
    from thrifty import Distiller
    from thrifty.cascade import open_run_teacher

    invoke("audit", run_dir, "-o", tmp_path / "audit.csv")
    with open(tmp_path / "audit.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == BUDGET and rows[0]["correct_label"] == ""
    wrong = [r["teacher_label"] != r["gold"] for r in rows]
    assert sum(wrong) >= 5
    top = sum(wrong[: len(rows) // 5]) / (len(rows) // 5)
    assert top > 2 * (sum(wrong) / len(rows)), (top, sum(wrong) / len(rows))  # twice the base rate at least
    # a reviewer fixes the top 20 with the gold label
    for r in rows[:20]:
        r["correct_label"] = r["gold"]
    with open(tmp_path / "fixed.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    res = invoke("import-labels", run_dir, tmp_path / "fixed.csv", "--reviewer", "alice")
    assert "stored 20 human labels" in res.output
    fixed = {r["text"]: r["gold"] for r in rows[:20]}
    changed = sum(r["gold"] != r["teacher_label"] for r in rows[:20])

    before = sim.stats()["requests"]
    cached, pool = open_run_teacher(run_dir, price_in=0.15, price_out=0.6)
    got = cached.lookup(list(fixed))
    assert all(got[i].label == fixed[t] and got[i].parse == "human" and got[i].raw == "human:alice" for i, t in enumerate(fixed))
    d = Distiller.resume(run_dir, cached.teacher, pool)
    human = [a for a in d.answers.values() if a.parse == "human"]
    assert len(human) == 20 and sim.stats()["requests"] == before  # used in training/validation, nothing paid
    export = tmp_path / "after.parquet"
    invoke("ledger", "export", run_dir, "-o", export)
    ex = pq.read_table(export).to_pylist()
    assert sum(r["human_label"] is not None for r in ex) == 20
    assert sum(r["label"] != r["human_label"] for r in ex if r["human_label"]) == changed  # the teacher's answer is kept
    invoke("report", run_dir, "-o", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert 'data-key="human_labels">20</b>' in page and f"{changed} changed the teacher" in page


def test_import_labels_by_id_and_rejecting_unknown_labels(run_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,correct_label\nhello,Sports\nworld,Weather\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["import-labels", str(run_dir), str(bad)])
    assert res.exit_code == 2 and "Weather" in res.output and "nothing was stored" in res.output
    from thrifty.teachers.ledger import Ledger

    with Ledger(run_dir / "ledger.sqlite") as led:
        assert led.query("SELECT COUNT(*) FROM human_labels WHERE note = 'bad.csv'")[0][0] == 0
    i = json.loads((run_dir / "state.json").read_text())["val_idx"][1]
    by_id = tmp_path / "by_id.csv"
    by_id.write_text(f"id,label\nd{i},World\nd4,\n", encoding="utf-8")  # the run's corpus ids; empty = skipped
    assert "stored 1 human labels" in invoke("import-labels", run_dir, by_id).output
    out = json.loads(invoke("ledger", "show", run_dir, "--id", f"d{i}").output)
    assert out["human_label"] == "World" and out["reviewer"] == "human" and out["parse"] != "human"  # teacher's kept


def test_human_label_is_not_paid_for(ag_news, sim):
    """A text a human already labelled never goes to the teacher."""
    from thrifty.task import Task
    from thrifty.teachers import CachedTeacher, Ledger, make_teacher

    task = Task.load(str(ag_news / "labels.json"))
    teacher = make_teacher("openai:sim", task, base_url=sim.base_url)
    with Ledger(":memory:") as led:
        led.add_human_labels([("a text only a human saw", "Sports")], task, reviewer="bob")
        c = CachedTeacher(teacher, led)
        out = c.label(["a text only a human saw", "Stocks fell on Wall Street today."])
        assert out[0].label == "Sports" and out[0].parse == "human" and c.requests == 1


def test_suspicion_weighs_student_and_teacher_confidence():
    """Same student disagreement: the unsure teacher's label is the more suspect one; recorded one-hot
    rows fall back to the stated confidence; 'self' ignores the teacher."""
    import numpy as np

    from thrifty.report.audit import suspicion, teacher_distribution

    student = np.array([[0.1, 0.9], [0.1, 0.9], [0.8, 0.2], [0.5, 0.5]])
    y = np.array([0, 0, 0, 0])
    conf = np.array([0.99, 0.55, 0.55, 0.55])
    onehot = np.array([[1.0, 0.0]] * 4)  # what a label+confidence recording stores as probs
    q = teacher_distribution(y, 2, conf, onehot)
    assert np.allclose(q[:, 0], [0.99, 0.55, 0.55, 0.55])
    both = suspicion(student, y, q, "both")
    assert list(np.argsort(-both)) == [1, 3, 2, 0]  # a 0.99-sure teacher outweighs a 0.9-sure student
    assert both[0] < 0.1 < both[1]  # a sure teacher needs a surer student
    selfs = suspicion(student, y, method="self")
    assert selfs[0] == selfs[1] and selfs[1] > selfs[3] > selfs[2]
