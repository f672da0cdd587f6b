"""Fixtures for the reliability suite: a small ag_news pool and a trial harness (real subprocesses, sim over HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from thrifty.bench.reliability import Harness, make_pool

POOL_ROWS = 300


@pytest.fixture(scope="session")
def small_pool(ag_news: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first rows of the ag_news pool (text, label) with its labels.json."""
    return make_pool(ag_news, tmp_path_factory.mktemp("reliability_pool"), POOL_ROWS)


@pytest.fixture
def harness(small_pool: Path, tmp_path: Path) -> Harness:
    return Harness(small_pool, tmp_path, budget=45, batch=15)


@pytest.fixture(scope="session")
def tfidf_run(small_pool: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with a small TF-IDF student (fast to load in predict workers), distilled in process."""
    from thrifty.corpus import read_corpus
    from thrifty.loop import Distiller
    from thrifty.sim import SimServer
    from thrifty.task import Task
    from thrifty.teachers.openai import OpenAITeacher

    out = tmp_path_factory.mktemp("tfidf_run") / "run"
    task = Task.load(small_pool / "labels.json")
    with SimServer.from_path(small_pool, noise=0.1) as sim:
        teacher = OpenAITeacher(task, "sim", base_url=sim.base_url, api_key_env="THRIFTY_TEST_NO_SUCH_KEY")
        Distiller(task, teacher, student="tfidf-svm", budget=45, batch=15, seed_size=15, val_size=15,
                  out=out).fit(read_corpus(small_pool / "pool.csv"))
    return out
