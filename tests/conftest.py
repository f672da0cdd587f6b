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


@pytest.fixture(scope="session")
def ag_news() -> Path:
    """The ag_news dataset directory (pool.csv, test.csv, labels.json)."""
    return dataset_path("ag_news")


@pytest.fixture
def sim_server() -> Iterator[Callable[..., Any]]:
    """Factory: ``sim_server(dataset="ag_news", **SimServer options)`` starts a simulated teacher on
    127.0.0.1 (any free port) and stops it after the test."""
    from thrifty.sim import SimServer

    started: list[SimServer] = []

    def make(dataset: str | Path = "ag_news", **kw: Any) -> SimServer:
        path = Path(dataset) if Path(dataset).exists() else dataset_path(str(dataset))
        sim = SimServer.from_path(path, **kw).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()
