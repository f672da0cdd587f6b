"""A CLI that scripts well: --version, exit codes, --json on stdout, -v logging, help on every option."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import click
import pytest
import typer
from typer.testing import CliRunner

from thrifty import __version__
from thrifty.cli import app
from thrifty.testing.sim import Fault, Faults

runner = CliRunner()


@pytest.fixture(scope="module")
def pool_csv(ag_news_csv):
    return ag_news_csv(0, 200)


def _sim_args(sim):
    return ["--teacher", "openai:sim", "--base-url", sim.base_url, "--api-key-env", "THRIFTY_TEST_NO_SUCH_KEY",
            "--price-in", "0.5", "--price-out", "1", "--student", "tfidf-lr"]


def _walk(cmd: click.Command, path: str = "thrifty"):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, f"{path} {name}")


def test_every_option_and_argument_has_help():
    missing = []
    for path, cmd in _walk(typer.main.get_command(app)):
        for p in cmd.params:
            if not (getattr(p, "help", None) or "").strip():
                missing.append(f"{path} {p.opts[0] if p.opts else p.name}")
    assert not missing, f"options without help text: {missing}"


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"thrifty {__version__}"


def test_version_and_help_do_not_import_the_numeric_stack():
    """`thrifty --help` took ~4 s when `import thrifty` pulled in scikit-learn, scipy and pandas."""
    code = ("import sys; from typer.testing import CliRunner; from thrifty.cli import app; "
            "[CliRunner().invoke(app, a) for a in (['--version'], ['--help'], ['label', '--help'])]; "
            "print(sorted(m for m in ('sklearn', 'scipy', 'pandas', 'pyarrow', 'torch') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


def test_exit_codes_usage_2_run_failure_1(sim_server, pool_csv, tmp_path):
    r = runner.invoke(app, ["distill", str(pool_csv), "-t", "replay", "--budget", "lots"])
    assert r.exit_code == 2 and "Cannot read budget" in r.output
    r = runner.invoke(app, ["distill", str(pool_csv), "--no-such-option"])
    assert r.exit_code == 2
    # the run starts and the teacher keeps failing: a run failure, exit 1
    sim = sim_server(faults=Faults(server_error=Fault(first=10**6)))
    r = runner.invoke(app, ["distill", str(pool_csv), *_sim_args(sim), "--budget", "60", "--max-retries", "0",
                            "--out", str(tmp_path / "run"), "-q"])
    assert r.exit_code == 1, r.output
    assert "could not be labelled" in r.output and sim.stats()["requests"] > 0


def test_interrupt_exits_130_and_keeps_paid_answers(sim_server, pool_csv, tmp_path):
    sim = sim_server(latency=0.2)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "thrifty", "distill", str(pool_csv), *_sim_args(sim), "--budget", "150",
                             "--concurrency", "2", "--out", str(tmp_path / "run"), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while sim.stats()["answered"] < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err


def test_json_on_stdout_and_verbose_retries(sim_server, pool_csv, tmp_path):
    sim = sim_server(faults=Faults(rate_limit=Fault(first=2), retry_after=0.05))
    out = tmp_path / "run"
    r = runner.invoke(app, ["-v", "distill", str(pool_csv), *_sim_args(sim), "--budget", "60", "--batch", "20",
                            "--seed-size", "20", "--val-size", "20", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)  # the whole of stdout is one JSON object
    assert res["ledger"]["calls"] == 60 and res["run_dir"] == str(out) and res["stop_reason"]
    assert "Retry-After" in r.stderr and "retry 1/" in r.stderr  # -v: retries and waits are visible
    assert "round" in r.stderr  # the human output went to stderr
    r = runner.invoke(app, ["ledger", "stats", str(out), "--json"])
    st = json.loads(r.stdout)
    assert r.exit_code == 0 and st["calls"] == 60 and st["dollars"] > 0 and st["models"][0]["model"] == "sim"
    r = runner.invoke(app, ["evaluate", str(out), str(pool_csv), "--json"])
    ev = json.loads(r.stdout)
    assert r.exit_code == 0 and ev["n"] == 200 and 0.25 < ev["accuracy"] <= 1.0
    pred = tmp_path / "pred.csv"
    r = runner.invoke(app, ["predict", str(out), str(pool_csv), "--out", str(pred), "--workers", "1", "-q", "--json"])
    pr = json.loads(r.stdout)
    assert r.exit_code == 0 and pr["rows"] == 200 and pred.exists()
    # without -v the retries stay quiet
    sim2 = sim_server(faults=Faults(rate_limit=Fault(first=2), retry_after=0.05))
    r = runner.invoke(app, ["distill", str(pool_csv), *_sim_args(sim2), "--budget", "40", "--batch", "20",
                            "--seed-size", "20", "--val-size", "10", "--out", str(tmp_path / "run2"), "-q"])
    assert r.exit_code == 0 and "Retry-After" not in r.output


def test_the_cli_starts_without_click_installed():
    """Recent typer vendors click, so a core install has no `click` module: no command module may import it."""
    code = "import sys; sys.modules['click'] = None; from thrifty.cli import app; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
