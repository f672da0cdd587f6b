"""CLI: distill / resume / plan / evaluate / ledger stats, and clear errors (exit code 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pcsv
import pytest
from typer.testing import CliRunner

from thrifty.cli import app

SHARED = next((p for p in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")) if p.exists()), None)
pytestmark = pytest.mark.skipif(SHARED is None, reason="../shared/datasets not found beside the repo")
runner = CliRunner()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 1,500-row slice of gwsd_gpt4o (real GPT-4o labels with stated confidence) as Parquet."""
    d = SHARED / "datasets" / "gwsd_gpt4o"
    t = pcsv.read_csv(d / "pool.csv")
    tmp = tmp_path_factory.mktemp("cli")
    import pyarrow.parquet as pq

    pq.write_table(t.slice(0, 1500), tmp / "pool.parquet")
    (tmp / "labels.yaml").write_text("labels:\n  - name: disagree\n    description: climate change is not a serious concern\n  - agree\n")
    return tmp, d


def test_distill_ledger_evaluate_plan(small):
    tmp, d = small
    out = tmp / "run"
    r = runner.invoke(app, ["distill", str(tmp / "pool.parquet"), "-l", str(tmp / "labels.yaml"), "-t", "replay",
                            "--budget", "160", "--batch", "30", "--seed-size", "30", "--val-size", "40",
                            "--strategy", "margin", "--eval", str(d / "test.csv"), "--gold-col", "label",
                            "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert "done" in r.output and "This invocation: 160 teacher requests" in r.output
    hist = json.loads((out / "state.json").read_text())["history"]
    assert hist[-1]["labels_total"] == 160 and hist[-1]["test_accuracy"] is not None
    r = runner.invoke(app, ["ledger", "stats", str(out)])
    assert r.exit_code == 0 and "160" in r.output
    r = runner.invoke(app, ["evaluate", str(out), str(d / "test.csv")])
    assert r.exit_code == 0 and "accuracy" in r.output
    # resume of a finished run does nothing more and pays nothing
    r = runner.invoke(app, ["distill", "--resume", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert "This invocation: 0 teacher requests" in r.output
    r = runner.invoke(app, ["plan", str(tmp / "pool.parquet"), "-l", str(tmp / "labels.yaml"), "-t", "openai:gpt-4o-mini",
                            "--budget", "500"])
    assert r.exit_code == 0 and "dollars (est.)" in r.output


def test_clear_errors_exit_2(small, tmp_path):
    tmp, _ = small
    r = runner.invoke(app, ["distill", str(tmp / "pool.parquet"), "-t", "replay", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--labels" in r.output
    r = runner.invoke(app, ["distill", str(tmp / "pool.parquet"), "-l", "a,b", "-t", "replay", "--text-col", "body"])
    assert r.exit_code == 2 and "no column(s) ['body']" in r.output
    r = runner.invoke(app, ["distill", str(tmp / "pool.parquet"), "-l", "a,b", "-t", "nonsense:x"])
    assert r.exit_code == 2 and "Unknown teacher" in r.output
    r = runner.invoke(app, ["distill", str(tmp / "pool.parquet"), "-l", "a,b", "-t", "replay", "--budget", "lots"])
    assert r.exit_code == 2 and "Cannot read budget" in r.output
    r = runner.invoke(app, ["distill", str(tmp / "pool.parquet"), "-l", "yes,no", "-t", "replay"])
    assert r.exit_code == 2 and "not in the label set" in r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path), str(tmp / "pool.parquet")])
    assert r.exit_code == 2 and "No thrifty model" in r.output
