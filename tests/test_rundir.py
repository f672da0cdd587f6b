"""The run directory has one owner (thrifty.run.RunDir): runs made from Python work with the CLI, --resume keeps
what the run was made with, old directories open, and --out never takes over someone else's directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty import Distiller, Task, read_corpus
from thrifty.cli import app
from thrifty.teachers import make_teacher
from thrifty.teachers.ledger import Ledger

runner = CliRunner()
ROWS = 500


@pytest.fixture(scope="module")
def pool(ag_news_csv) -> Path:
    """The first rows of the ag_news pool (keeps TF-IDF and training fast), with its labels.json."""
    return ag_news_csv(0, ROWS).parent


def _python_run(pool: Path, sim, out: Path, budget: int = 60) -> Distiller:
    """The README's Python example, against the simulated server."""
    task = Task.load(pool / "labels.json")
    corpus = read_corpus(pool / "pool.csv", text_col="text")
    teacher = make_teacher("openai:sim", task, base_url=sim.base_url, price_in=1.0, price_out=2.0)
    return Distiller(task, teacher, strategy="mraru", budget=budget, batch=20, seed_size=20, val_size=20,
                     student="tfidf[char=false]-lr", out=out).fit(corpus)


def test_a_python_made_run_resumes_from_the_cli_without_a_corpus_at_its_prices(sim_server, pool, tmp_path):
    sim = sim_server(pool)
    out = tmp_path / "run"
    first = _python_run(pool, sim, out)
    dollars = first.history_[-1]["dollars"]
    assert first.history_[-1]["labels_total"] == 60 and dollars > 0
    cfg = json.loads((out / "config.json").read_text())
    assert "cli" not in cfg.get("meta", {}) and cfg["format"] == 2
    assert cfg["teacher_recipe"]["price_in"] == 1.0 and cfg["source"]["corpus"] == str((pool / "pool.csv").resolve())
    # resume with a larger budget: the run's corpus, teacher and prices come from the run directory
    r = runner.invoke(app, ["distill", "--resume", str(out), "--budget", "100", "-q"])
    assert r.exit_code == 0, r.output
    assert "This invocation: 40 teacher requests" in r.output, r.output
    state = json.loads((out / "state.json").read_text())
    assert state["history"][-1]["labels_total"] == 100
    assert state["history"][-1]["dollars"] > dollars * 100 / 60 * 0.8  # new labels are not free
    with Ledger(out / "ledger.sqlite") as led:
        assert led.stats().calls == 100 and led.stats().dollars == pytest.approx(state["history"][-1]["dollars"])
    assert sim.stats()["texts_answered_twice"] == 0
    # and from Python, with neither teacher nor corpus
    again = Distiller.resume(out)
    assert again.history_[-1]["labels_total"] == 100 and again.cached.requests == 0


def test_a_python_made_run_predicts_with_the_cascade(sim_server, pool, tmp_path):
    sim = sim_server(pool)
    out = tmp_path / "run"
    _python_run(pool, sim, out)
    r = runner.invoke(app, ["predict", str(out), str(pool / "pool.csv"), "--out", str(tmp_path / "pred.csv"),
                            "--cascade", "--max-escalations", "10", "--workers", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert "cascade:" in r.output and (tmp_path / "pred.csv").exists()


def test_resume_refuses_changes_that_make_another_run(sim_server, pool, tmp_path):
    sim = sim_server(pool)
    out = tmp_path / "run"
    _python_run(pool, sim, out)
    for extra, flag in ((["--teacher", "replay"], "--teacher"), (["--labels", "a,b"], "--labels"),
                        (["--strategy", "margin"], "--strategy"), (["--price-in", "0"], "--price-in")):
        r = runner.invoke(app, ["distill", "--resume", str(out), "-q", *extra])
        assert r.exit_code == 2 and flag in r.output and "cannot change" in r.output, (extra, r.output)


def test_format_1_run_directories_still_open(sim_server, pool, tmp_path):
    sim = sim_server(pool)
    out = tmp_path / "run"
    _python_run(pool, sim, out)
    rec = json.loads((out / "config.json").read_text())
    old = {"config": rec["config"], "task": rec["task"], "teacher": rec["teacher"],
           "meta": {"run_id": rec["run_id"], "cli": {
               "corpus": rec["source"]["corpus"], "teacher": "openai:sim", "base_url": sim.base_url,
               "api_key_env": "OPENAI_API_KEY", "text_col": "text", "id_col": None, "gold_col": None, "eval": None,
               "ledger": None}}}
    (out / "config.json").write_text(json.dumps(old))
    r = runner.invoke(app, ["distill", "--resume", str(out), "-q"])
    assert r.exit_code == 0 and "This invocation: 0 teacher requests" in r.output, r.output
    newer = dict(rec, format=99)
    (out / "config.json").write_text(json.dumps(newer))
    r = runner.invoke(app, ["distill", "--resume", str(out), "-q"])
    assert r.exit_code == 2 and "newer thrifty" in r.output


def test_out_must_be_new_empty_or_a_run(pool, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "history.csv").write_text("my,own\n1,2\n")
    (mine / "notes.txt").write_text("keep me")
    args = ["distill", str(pool / "pool.csv"), "-l", str(pool / "labels.json"), "-t", "replay", "-q"]
    r = runner.invoke(app, [*args, "--out", str(mine)])
    assert r.exit_code == 2 and "not a thrifty run directory" in r.output
    assert (mine / "history.csv").read_text() == "my,own\n1,2\n" and sorted(p.name for p in mine.iterdir()) == ["history.csv", "notes.txt"]
    (tmp_path / "afile").write_text("x")
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "afile")])
    assert r.exit_code == 2 and "is a file" in r.output


def test_a_key_given_as_the_env_var_name_is_refused_and_never_written(pool, tmp_path, sim_server):
    sim = sim_server(pool)
    key = "sk-proj-" + "A1b2C3d4" * 6
    r = runner.invoke(app, ["distill", str(pool / "pool.csv"), "-l", str(pool / "labels.json"), "-t", "openai:sim",
                            "--base-url", sim.base_url, "--api-key-env", key, "--out", str(tmp_path / "run"), "-q"])
    assert r.exit_code == 2 and "--api-key-env takes the NAME" in r.output
    assert key not in r.output and key[:12] not in r.output
    assert not (tmp_path / "run" / "config.json").exists()
    long_alnum = "A1b2C3d4" * 6
    r = runner.invoke(app, ["distill", str(pool / "pool.csv"), "-l", str(pool / "labels.json"), "-t", "openai:sim",
                            "--base-url", sim.base_url, "--api-key-env", long_alnum, "--out", str(tmp_path / "run"), "-q"])
    assert r.exit_code == 2 and long_alnum not in r.output


class _FirstWordTeacher:
    """A plug-in teacher kind (as an entry point would register it): labels by a keyword, says how it is rebuilt."""

    def __init__(self, task, rule: str, fallback: str, timeout: float = 60.0):
        self.task, self.rule, self.fallback, self.timeout = task, rule, fallback, timeout

    def identity(self):
        return {"kind": "keyword", "rule": self.rule, "fallback": self.fallback}

    def recipe(self):
        return {"spec": f"keyword:{self.rule}", "fallback": self.fallback, "timeout": self.timeout}

    def label(self, texts, on_result=None):
        from thrifty.teachers.base import TeacherLabel, one_hot

        out = []
        for i, t in enumerate(texts):
            lab = self.task.labels[0] if self.rule.lower() in t.lower() else self.fallback
            out.append(TeacherLabel(lab, one_hot(self.task, lab), 1.0, raw=lab))
            if on_result:
                on_result(i, out[-1])
        return out


def test_a_plug_in_teacher_kind_is_rebuilt_by_resume_from_its_recipe(pool, tmp_path):
    """A teacher kind registered in TEACHERS (e.g. through the thrifty.teachers entry-point group) that
    implements RebuildableTeacher.recipe() resumes from the CLI: the run records its recipe, not None."""
    from thrifty.teachers import TEACHERS, teacher_recipe

    def build(arg, task, corpus, price, *, base_url=None, api_key_env=None, fallback="World", timeout=60.0):
        return _FirstWordTeacher(task, arg, fallback, timeout)

    TEACHERS.register("keyword", build)
    try:
        task = Task.load(pool / "labels.json")
        corpus = read_corpus(pool / "pool.csv", text_col="text")
        teacher = make_teacher("keyword:sport", task, fallback=task.labels[1], timeout=5.0)
        assert teacher_recipe(teacher) == {"spec": "keyword:sport", "fallback": task.labels[1], "timeout": 5.0}
        out = tmp_path / "run"
        Distiller(task, teacher, strategy="random", budget=40, batch=10, seed_size=10, val_size=10,
                  student="tfidf[char=false]-lr", out=out).fit(corpus)
        r = runner.invoke(app, ["distill", "--resume", str(out), "--budget", "60", "-q"])
        assert r.exit_code == 0, r.output
        assert json.loads((out / "state.json").read_text())["history"][-1]["labels_total"] == 60
        from thrifty.run import RunDir

        assert RunDir.open(out).build_teacher(corpus).timeout == 5.0  # its own settings are kept, not stripped
        # a plug-in built on a built-in teacher class is recorded by its own recipe, not as the base kind
        from thrifty.teachers.replay import ReplayTeacher

        class Sub(ReplayTeacher):
            def recipe(self):
                return {"spec": "keyword:x"}

        sub = Sub.from_corpus_column(task, read_corpus(pool / "pool.csv", text_col="text", extra_cols=["label"]), "label")
        assert teacher_recipe(sub) == {"spec": "keyword:x"}
    finally:
        TEACHERS._items.pop("keyword", None)
