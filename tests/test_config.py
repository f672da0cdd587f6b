"""One validated configuration: the spec grammar, bound to constructors, checked before anything is written or paid."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from thrifty import Distiller, Task
from thrifty.cli import app
from thrifty.config import DistillConfig, format_spec, parse_spec, split_student
from thrifty.errors import ConfigError
from thrifty.teachers.replay import load_replay

SHARED = next((p for p in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")) if p.exists()), None)
runner = CliRunner()


# ---- the grammar and the binding (no data) -------------------------------------------------------------
def test_grammar_round_trips_and_splits_students():
    assert parse_spec("mraru[exponent=3]") == ("mraru", {"exponent": 3})
    assert parse_spec("llkd[momentum=0.9,soft=true,teacher_threshold=none]") == (
        "llkd", {"momentum": 0.9, "soft": True, "teacher_threshold": None})
    assert format_spec("mraru", {"exponent": 3, "measure": "margin"}) == "mraru[exponent=3,measure=margin]"
    assert split_student("tfidf[char=false]-lr[C=1e-3]") == ("tfidf", {"char": False}, "lr", {"C": 1e-3})
    assert split_student("st:/models/all-mpnet-base-v2-svm") == ("st:/models/all-mpnet-base-v2", {}, "svm", {})


def test_config_is_canonical_and_bound_to_signatures():
    a = DistillConfig(strategy="MRARU[exponent=3]", student="tfidf[char=false]-lr[C=1]")
    b = DistillConfig(strategy="mraru", strategy_params={"exponent": 3}, student="tfidf[char=false]-lr",
                      student_params={"C": 1})
    assert a.to_dict() == b.to_dict()
    assert (a.strategy, a.strategy_params, a.student, a.student_params) == ("mraru", {"exponent": 3}, "tfidf[char=false]-lr", {"C": 1})
    assert DistillConfig(strategy="llkd[momentum=0.5,soft=true]").strategy_params == {"momentum": 0.5, "soft": True}
    with pytest.raises(ConfigError, match="no parameter 'exponnt'.*exponent=2.0"):
        DistillConfig(strategy="mraru[exponnt=3]")
    with pytest.raises(ConfigError, match="exponent must be > 0"):
        DistillConfig(strategy="mraru[exponent=-1]")
    with pytest.raises(ConfigError, match="given twice"):
        DistillConfig(strategy="mraru[exponent=3]", strategy_params={"exponent": 2})
    with pytest.raises(ConfigError, match="char must be true or false"):
        DistillConfig(student="tfidf[char=maybe]-lr")


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as e:
        DistillConfig(strategy="margn", student="tfidf-xx", batch=0, val_size=-3, budget="lots")
    msgs = e.value.problems
    assert len(msgs) == 5, msgs
    assert any("Did you mean 'margin'" in m for m in msgs) and any("'xx'" in m for m in msgs)
    assert any("batch" in m for m in msgs) and any("val_size" in m for m in msgs) and any("budget" in m for m in msgs)
    assert str(e.value).startswith("5 problems with the configuration")


# ---- Python: settings given with a config are applied, never dropped ----------------------------------------
@pytest.fixture(scope="module")
def mr():
    if SHARED is None:
        pytest.skip("../shared/datasets not found beside the repo")
    d = SHARED / "datasets" / "mr_chatgpt"
    task = Task.load(json.loads((d / "labels.json").read_text())["labels"])
    corpus, teacher = load_replay(task, d / "pool.csv")
    corpus.texts, corpus.ids = corpus.texts[:600], corpus.ids[:600]
    return task, corpus, teacher


def test_settings_given_with_a_config_are_applied(mr, tmp_path):
    task, corpus, teacher = mr
    cfg = DistillConfig(strategy="random", budget=100, seed_size=20, val_size=20, student="tfidf[char=false]-lr")
    d = Distiller(task, teacher, config=cfg, batch=10)
    assert d.config.batch == 10 and d.config.strategy == "random"
    d.fit(corpus)
    assert [r["labels"] for r in d.history_][:3] == [20, 30, 40]
    assert d.features.char is False  # the features' parameters reach the extractor
    with pytest.raises(ConfigError, match="Unknown strategy 'margn'"):
        Distiller(task, teacher, strategy="margn", out=tmp_path / "never")
    assert not (tmp_path / "never").exists()


# ---- the CLI ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    if SHARED is None:
        pytest.skip("../shared/datasets not found beside the repo")
    t = pcsv.read_csv(SHARED / "datasets" / "gwsd_gpt4o" / "pool.csv")
    tmp = tmp_path_factory.mktemp("cfg")
    pq.write_table(t.slice(0, 600), tmp / "pool.parquet")
    (tmp / "labels.yaml").write_text("labels: [disagree, agree]\n")
    return tmp


def _distill(small: Path, out: Path, *extra: str):
    return runner.invoke(app, ["distill", str(small / "pool.parquet"), "-l", str(small / "labels.yaml"), "-t", "replay",
                               "--budget", "60", "--batch", "20", "--seed-size", "20", "--val-size", "20",
                               "--student", "tfidf[char=false]-lr", "--out", str(out), "-q", *extra])


def test_a_typo_fails_before_anything_is_written_and_the_corrected_command_runs(small, tmp_path):
    out = tmp_path / "run"
    r = _distill(small, out, "--strategy", "margn")
    assert r.exit_code == 2 and "Unknown strategy 'margn'" in r.output and "Did you mean 'margin'" in r.output
    assert "Traceback" not in r.output and not (out / "config.json").exists()
    r = _distill(small, out, "--strategy", "margin")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["config"]["strategy"] == "margin"


def test_old_flags_are_aliases_and_are_never_dropped(small, tmp_path):
    r = _distill(small, tmp_path / "a", "--strategy", "MRARU", "--mraru-exponent", "3")
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "a" / "config.json").read_text())["config"]
    assert (saved["strategy"], saved["strategy_params"]) == ("mraru", {"exponent": 3.0})
    r = _distill(small, tmp_path / "b", "--strategy", "mraru[exponent=3]")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "b" / "config.json").read_text())["config"]["strategy_params"] == {"exponent": 3}
    r = _distill(small, tmp_path / "c", "--strategy", "margin", "--mraru-exponent", "3")
    assert r.exit_code == 2 and "applies to --strategy mraru only" in r.output


def test_bad_values_are_one_line_errors_and_llkd_is_reachable(small, tmp_path):
    for args, msg in ((["--mraru-exponent", "-1"], "exponent must be > 0"),
                      (["--strategy", "mraru[exponent=-1]"], "mraru[exponent=-1]: exponent must be > 0"),
                      (["--strategy", "llkd[momentum=fast]"], "momentum must be a number"),
                      (["--student", "tfidf[chars=false]-lr"], "no parameter 'chars'"),
                      (["--val-size", "-3"], "val_size")):
        r = _distill(small, tmp_path / "bad", *args)
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, (args, r.output)
        assert not (tmp_path / "bad").exists()
    r = _distill(small, tmp_path / "llkd", "--strategy", "llkd[momentum=0.5,weighted=false]")
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "llkd" / "config.json").read_text())["config"]
    assert saved["strategy_params"] == {"momentum": 0.5, "weighted": False}
