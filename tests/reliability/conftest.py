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
