"""End to end through the CLI in a subprocess, against the simulated teacher over HTTP:
a full run, a SIGKILL mid-run then --resume, and a re-run that pays for nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import sigkill_when

BUDGET, BATCH = 150, 25  # 30 validation + 50 seed + 3 rounds of at most 25
STUDENT = "tfidf-svm"  # the fastest built-in student on 2 busy cores; the loop is what is under test
POOL_ROWS = 800


@pytest.fixture(scope="module")
def pool(ag_news_csv) -> Path:
    """The first rows of the ag_news pool (keeps TF-IDF and training fast), with its labels.json."""
    return ag_news_csv(0, POOL_ROWS).parent


def distill_cmd(pool: Path, sim, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "thrifty", "distill", str(pool / "pool.csv"), "--teacher", "openai:sim",
            "--base-url", sim.base_url, "--budget", str(BUDGET), "--batch", str(BATCH), "--student", STUDENT,
            "--gold-col", "label", "--out", str(out), "--quiet", *extra]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env())
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-4000:]}"
    return r


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OPENAI_API_KEY", None)  # the sim needs no key; nothing may reach a real provider
    return env


def ledger_texts(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT text_sha256 FROM labels")]


def final_state(out: Path) -> dict:
    return json.loads((out / "state.json").read_text())


def test_distill_completes_and_rerun_with_same_ledger_pays_nothing(sim_server, pool, tmp_path):
    sim = sim_server(pool, noise=0.1, latency=0.005)
    ledger = tmp_path / "shared-ledger.sqlite"
    t0 = time.perf_counter()
    run(distill_cmd(pool, sim, tmp_path / "run1", "--ledger", str(ledger)))
    first_s = time.perf_counter() - t0
    st = sim.stats()
    assert st["answered"] == BUDGET and st["texts_answered_twice"] == 0
    state = final_state(tmp_path / "run1")
    assert state["history"][-1]["labels_total"] == BUDGET
    assert (tmp_path / "run1" / "history.csv").exists() and (tmp_path / "run1" / "model").is_dir()
    assert sorted(ledger_texts(ledger)) == sorted(st["answered_by_text"])
    # (c) the same run into a new directory, same ledger: zero requests reach the server
    sim.reset()
    t0 = time.perf_counter()
    run(distill_cmd(pool, sim, tmp_path / "run2", "--ledger", str(ledger)))
    second_s = time.perf_counter() - t0
    assert sim.stats()["requests"] == 0
    again = final_state(tmp_path / "run2")
    assert again["train_idx"] == state["train_idx"] and again["val_idx"] == state["val_idx"]
    assert (tmp_path / "run2" / "model").is_dir()
    print(f"\ne2e timings: first run {first_s:.1f}s, cached re-run {second_s:.1f}s")


def test_sigkill_mid_run_then_resume_pays_each_text_once(sim_server, pool, tmp_path):
    sim = sim_server(pool, noise=0.1, latency=0.005)
    out = tmp_path / "run"
    kill_after = 30 + 50 + 10  # validation + seed + 10 labels into round 1
    sim.hold_after(kill_after)  # then requests hang, so the kill lands with nothing answered-but-unsaved
    t0 = time.perf_counter()
    proc = subprocess.Popen(distill_cmd(pool, sim, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env())
    sigkill_when(proc, sim, lambda: sim.stats()["answered"] == kill_after and sim.stats()["requests"] > kill_after
                 and (out / "ledger.sqlite").exists() and len(ledger_texts(out / "ledger.sqlite")) == kill_after,
                 f"{kill_after} answers in the ledger")
    killed_s = time.perf_counter() - t0
    paid = sim.stats()
    # every paid answer is in the ledger
    assert sorted(ledger_texts(out / "ledger.sqlite")) == sorted(paid["answered_by_text"])
    assert final_state(out)["history"][-1]["labels_total"] < BUDGET  # it really was mid-run
    t0 = time.perf_counter()
    run([sys.executable, "-m", "thrifty", "distill", "--resume", str(out), "--quiet"])
    resume_s = time.perf_counter() - t0
    st = sim.stats()
    assert st["texts_answered_twice"] == 0, "a text was paid for twice"
    assert st["answered"] == BUDGET
    assert sorted(ledger_texts(out / "ledger.sqlite")) == sorted(st["answered_by_text"])
    state = final_state(out)
    assert state["history"][-1]["labels_total"] == BUDGET
    assert len(state["val_idx"]) + len(state["train_idx"]) == BUDGET
    assert (out / "model").is_dir()
    print(f"\ne2e timings: run until kill {killed_s:.1f}s, resume {resume_s:.1f}s")
