"""Shared fixtures: where the shared datasets live, and a simulated teacher server per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest


def _shared_root() -> Path:
    here = Path(__file__).resolve().parents[2] / "shared"
    return here if (here / "datasets").is_dir() else Path("/work/shared")


SHARED = _shared_root()
DATASETS = SHARED / "datasets"


def dataset_path(name: str) -> Path:
    """The shared dataset directory ``name``; skips the test cleanly if it is not there."""
    p = DATASETS / name
    if not (p / "pool.csv").exists():
        pytest.skip(f"shared dataset {name!r} not found at {p} (expected <repo>/../shared/datasets or /work/shared/datasets)")
    return p


def write_recorded_csv(dataset: str, pick: Callable[[list[dict]], list[dict]], dest: Path) -> list[dict]:
    """Write ``pick``'s rows of a shared dataset whose recorded teacher is in its columns to ``dest`` (the text
    and the teacher's columns: what the replay teacher reads); returns those rows."""
    import csv

    with open(dataset_path(dataset) / "pool.csv", newline="", encoding="utf-8") as f:
        rows = pick(list(csv.DictReader(f)))
    keep = ["text", "teacher_label"] + (["teacher_confidence"] if "teacher_confidence" in rows[0] else [])
    with open(dest, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keep, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return rows


EXPORT_RUNNER = """
import importlib.util, json, sys
sys.modules["thrifty"] = None
spec = importlib.util.spec_from_file_location("example", sys.argv[1] + "/example.py")
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)
import numpy as np
np.save(sys.argv[3], example.predict_proba(json.load(open(sys.argv[2], encoding="utf-8"))))
"""


def run_export_example(export_dir: Path, texts: list[str], tmp: Path) -> Any:
    """Probabilities from ``export_dir``'s example.py for ``texts``, run in a subprocess where thrifty
    cannot be imported: an export must stand alone."""
    import json
    import subprocess
    import sys

    import numpy as np

    (tmp / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    res = subprocess.run([sys.executable, "-I", "-c", EXPORT_RUNNER, str(export_dir), str(tmp / "texts.json"),
                          str(tmp / "p.npy")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return np.load(tmp / "p.npy")


def sigkill_when(proc: Any, sim: Any, ready: Callable[[], bool], what: str, settle: float = 0.0,
                 timeout: float = 300) -> None:
    """SIGKILL ``proc`` (a CLI run against ``sim``, stdout piped) ``settle`` seconds after ``ready()``; it must
    not end before. Cleans up the process and releases the sim's held requests whatever happens."""
    import signal
    import time

    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, f"the run ended early:\n{proc.stdout.read().decode()[-3000:]}"
            assert time.monotonic() < deadline, f"never got there ({what}): {sim.stats()['answered']} answers"
            time.sleep(0.05)
        time.sleep(settle)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        sim.release()


@pytest.fixture(autouse=True)
def _own_default_ledger(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Distiller without out= keeps a persistent ledger (paths.default_ledger_path): one per test here."""
    monkeypatch.setenv("THRIFTY_LEDGER", str(tmp_path_factory.mktemp("ledger") / "ledger.sqlite"))


@pytest.fixture(scope="session")
def ag_news() -> Path:
    """The ag_news dataset directory (pool.csv, test.csv, labels.json)."""
    return dataset_path("ag_news")


@pytest.fixture(scope="session")
def ag_news_csv(ag_news: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], Path]:
    """Factory: ``ag_news_csv(start, stop)`` writes ag_news pool rows [start, stop) as a text,label CSV
    with labels.json beside it (so the CLI finds the label set) and returns the CSV's path."""
    import csv

    with open(ag_news / "pool.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    def make(start: int, stop: int) -> Path:
        d = tmp_path_factory.mktemp(f"ag_news_{start}_{stop}")
        with open(d / "pool.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["text", "label"])
            w.writeheader()
            w.writerows({"text": r["text"], "label": r["label"]} for r in rows[start:stop])
        (d / "labels.json").write_text((ag_news / "labels.json").read_text())
        return d / "pool.csv"

    return make


@pytest.fixture
def json_server() -> Iterator[Callable[..., str]]:
    """Factory: ``json_server(respond)`` serves HTTP on 127.0.0.1 where every POST is answered with
    ``respond(n, body) -> (status, JSON object)`` (``n``: 1 for the first request); returns its ``/v1`` URL
    (:class:`thrifty.testing.http.JsonServer`, stopped after the test)."""
    from thrifty.testing.http import JsonServer

    servers: list[JsonServer] = []

    def make(respond: Callable[[int, Any], tuple[int, Any]]) -> str:
        servers.append(JsonServer(lambda n, body, headers: respond(n, body)))
        return servers[-1].base_url

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def sim_server() -> Iterator[Callable[..., Any]]:
    """Factory: ``sim_server(dataset="ag_news", **SimServer options)`` starts a simulated teacher on
    127.0.0.1 (any free port) and stops it after the test."""
    from thrifty.testing.sim import SimServer

    started: list[SimServer] = []

    def make(dataset: str | Path = "ag_news", **kw: Any) -> SimServer:
        path = Path(dataset) if Path(dataset).exists() else dataset_path(str(dataset))
        sim = SimServer.from_path(path, **kw).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture(scope="session")
def ag_news_run(tmp_path_factory: pytest.TempPathFactory, ag_news: Path) -> Path:
    """A small real run: `thrifty distill` on 1,000 ag_news pool rows, recorded Qwen teacher, 120 labels.

    The pool CSV carries the recording as teacher_label/teacher_confidence columns, so the
    run's teacher is ``replay`` (rebuilt from config.json by `predict --cascade`).
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv
    from typer.testing import CliRunner

    from thrifty.cli import app

    d = tmp_path_factory.mktemp("ag_news_run")
    pool = pcsv.read_csv(ag_news / "pool.csv").slice(0, 1000)
    rec = pcsv.read_csv(ag_news / "teacher_qwen2.5-1.5b.csv").to_pydict()
    by_row = {r: (lab, c) for r, lab, c in zip(rec["row"], rec["teacher_label"], rec["teacher_confidence"])}
    pool = pool.append_column("teacher_label", pa.array([by_row.get(i, (None, None))[0] for i in range(pool.num_rows)]))
    pool = pool.append_column("teacher_confidence", pa.array([by_row.get(i, (None, None))[1] for i in range(pool.num_rows)]))
    pcsv.write_csv(pool, d / "pool.csv")
    (d / "labels.json").write_text((ag_news / "labels.json").read_text())
    res = CliRunner().invoke(app, ["distill", str(d / "pool.csv"), "--labels", str(d / "labels.json"), "--teacher", "replay",
                                   "--budget", "120", "--val-size", "40", "--batch", "30", "--out", str(d / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    return d


class CrashingTeacher:
    """Delegates to a real teacher but dies after ``budget`` answers (a crash mid-round);
    ``calls`` counts the answers it delivered."""

    def __init__(self, inner: Any, budget: int):
        self.inner, self.task, self.left, self.calls = inner, inner.task, budget, 0

    def identity(self) -> dict:
        return self.inner.identity()

    def label(self, texts, on_result=None):
        from thrifty.errors import TeacherError

        out = []
        for i, t in enumerate(texts):
            if self.left <= 0:
                raise TeacherError("connection reset")
            self.left -= 1
            self.calls += 1
            out.append(self.inner.label([t])[0])
            if on_result:
                on_result(i, out[-1])
        return out


# ---- the reliability suite (tests/reliability/): a small ag_news pool and a trial harness -------------------
RELIABILITY_POOL_ROWS = 300


@pytest.fixture(scope="session")
def small_pool(ag_news: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first rows of the ag_news pool (text, label) with its labels.json."""
    from thrifty.bench.reliability import make_pool

    return make_pool(ag_news, tmp_path_factory.mktemp("reliability_pool"), RELIABILITY_POOL_ROWS)


@pytest.fixture
def harness(small_pool: Path, tmp_path: Path) -> Any:
    """Real ``thrifty distill`` / ``predict`` subprocesses against the simulated teacher over HTTP."""
    from thrifty.bench.reliability import Harness

    return Harness(small_pool, tmp_path, budget=45, batch=15)


@pytest.fixture(scope="session")
def tfidf_run(small_pool: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with a small TF-IDF student (fast to load in predict workers), distilled in process."""
    from thrifty.corpus import read_corpus
    from thrifty.loop import Distiller
    from thrifty.testing.sim import SimServer
    from thrifty.task import Task
    from thrifty.teachers.openai import OpenAITeacher

    out = tmp_path_factory.mktemp("tfidf_run") / "run"
    task = Task.load(small_pool / "labels.json")
    with SimServer.from_path(small_pool, noise=0.1) as sim:
        teacher = OpenAITeacher(task, "sim", base_url=sim.base_url, api_key_env="THRIFTY_TEST_NO_SUCH_KEY")
        Distiller(task, teacher, student="tfidf-svm", budget=45, batch=15, seed_size=15, val_size=15,
                  out=out).fit(read_corpus(small_pool / "pool.csv"))
    return out
