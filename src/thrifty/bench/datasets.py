"""Benchmark datasets and the teachers that label them.

A dataset is either a name under ``<shared>/datasets/`` (``pool.csv``, ``test.csv``,
``labels.json``, optional recorded teachers), or any CSV/JSONL/Parquet file with a gold
column (its test split is ``--test FILE`` or, failing that, a seeded 20% hold-out).

The shared folder is ``../shared`` beside the repository, else ``../shared`` beside the
working directory, else ``/work/shared``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..corpus import Corpus, column_names, read_corpus
from ..errors import ThriftyError
from ..task import Task, text_sha256
from ..teachers import make_teacher
from ..teachers.base import Teacher
from ..teachers.models import sha256_file
from ..teachers.pricing import load_price_table, price_for
from ..teachers.replay import CONF_COLS, LABEL_COLS, PROBS_COLS, ReplayTeacher
from .teachers import NoisyTeacher, OracleTeacher

RECORDED_GLOB = "teacher_*.csv"


def shared_root() -> Path:
    """The shared folder holding ``datasets/``."""
    repo = Path(__file__).resolve().parents[3]
    for cand in (repo.parent / "shared", Path.cwd().parent / "shared", Path("/work/shared")):
        if (cand / "datasets").is_dir():
            return cand
    raise ThriftyError("No shared datasets folder found (looked for ../shared/datasets and /work/shared/datasets).")


def dataset_names() -> list[str]:
    """Every dataset in the shared folder."""
    root = shared_root() / "datasets"
    return sorted(p.name for p in root.iterdir() if (p / "pool.csv").exists() and (p / "labels.json").exists())


@dataclass
class BenchData:
    """A pool (with gold), a gold test split that is never trained on, and the label set."""

    name: str  # the shared dataset's name, an explicit name, or the file's full path: never just a stem
    task: Task
    corpus: Corpus
    test_texts: list[str]
    test_gold: list[str | None]
    rows: np.ndarray  # position of each corpus row in the original pool file
    directory: Path | None = None
    recorded: list[Path] = field(default_factory=list)  # teacher_*.csv recordings beside the pool
    identity: dict[str, Any] = field(default_factory=dict)  # what cache keys use: name, files and their sha256


def dataset_identity(spec: str | Path, *, test: str | Path | None = None, gold_col: str = "label",
                     text_col: str = "text", seed: int = 0) -> dict[str, Any]:
    """What a dataset's cache keys are made of, without loading it: a shared dataset's name, or a
    file's name (explicit, else its full resolved path) with the sha256 of its pool and test files,
    so an edited file or another file with the same stem never reuses a cached run."""
    given, spec = split_name(str(spec))
    path = Path(spec)
    if not path.exists():
        return {"name": given or str(spec)}
    return {"name": given or str(path.resolve()), "pool_sha256": sha256_file(path), "gold_col": gold_col,
            "text_col": text_col, "test_sha256": sha256_file(test) if test is not None else None, "split_seed": seed}


def split_name(spec: str) -> tuple[str | None, str]:
    """``'mine=data/pool.csv'`` -> ``('mine', 'data/pool.csv')``; ``'trec6'`` -> ``(None, 'trec6')``."""
    name, sep, rest = str(spec).partition("=")
    if sep and name and rest and "/" not in name and not Path(spec).exists():
        return name.strip(), rest.strip()
    return None, str(spec)


def _subsample(n: int, k: int | None, seed: int) -> np.ndarray:
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _take(c: Corpus, idx: np.ndarray) -> Corpus:
    return Corpus(
        texts=[c.texts[i] for i in idx], ids=np.asarray(c.ids)[idx],
        gold=[c.gold[i] for i in idx] if c.gold is not None else None,
        extra={k: [v[i] for i in idx] for k, v in c.extra.items()}, source=c.source,
    )


def load_dataset(
    spec: str | Path,
    *,
    labels: str | Sequence[str] | None = None,
    gold_col: str = "label",
    text_col: str = "text",
    test: str | Path | None = None,
    max_pool: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    name: str | None = None,
) -> BenchData:
    """Load a shared dataset by name, or a user file with a gold column (``NAME=FILE`` names it).

    A file's dataset name is ``name`` if given, else its full resolved path: two files with
    the same stem (``a/pool.csv``, ``b/pool.csv``) are two datasets, in every cache key and
    every table. ``test`` is the file's gold test split; without it, a seeded 20% hold-out."""
    given, spec = split_name(str(spec))
    name = name or given
    path = Path(spec)
    directory: Path | None = None
    if not path.exists():
        directory = shared_root() / "datasets" / str(spec)
        if not (directory / "pool.csv").exists():
            raise ThriftyError(
                f"Unknown dataset {spec!r}: not a file and not one of {dataset_names()}. "
                "Give a shared dataset name or a CSV/JSONL/Parquet file with a gold column."
            )
        if test is not None:
            raise ThriftyError(f"{spec!r} is a shared dataset with its own test.csv; --test applies to files only.")
        path = directory / "pool.csv"
        test = directory / "test.csv"
        labels = labels or str(directory / "labels.json")
    names = column_names(path)
    if gold_col not in names:
        raise ThriftyError(f"{path} has no gold column {gold_col!r} (it has {names}); name it with --gold-col.")
    if text_col not in names:
        raise ThriftyError(f"{path} has no text column {text_col!r} (it has {names}); name it with --text-col.")
    extra = [c for c in LABEL_COLS + CONF_COLS + PROBS_COLS if c in names]
    pool = read_corpus(path, text_col=text_col, gold_col=gold_col, extra_cols=extra)
    if labels is None:
        beside = path.parent / "labels.json"
        labels = str(beside) if beside.exists() else sorted({g for g in pool.gold or [] if g})
    task = Task.load(labels)
    if test is not None:
        if not Path(test).exists():
            raise ThriftyError(f"Test file {test} does not exist.")
        tnames = column_names(test)
        if gold_col not in tnames or text_col not in tnames:
            raise ThriftyError(f"Test file {test} needs the columns {text_col!r} and {gold_col!r} (it has {tnames}).")
        ev = read_corpus(test, text_col=text_col, gold_col=gold_col)
        pool_idx = np.arange(len(pool))
    else:  # seeded 80/20 hold-out of the user's file
        perm = np.random.default_rng(seed).permutation(len(pool))
        cut = max(1, len(pool) // 5)
        ev = _take(pool, np.sort(perm[:cut]))
        pool_idx = np.sort(perm[cut:])
    pool_idx = pool_idx[_subsample(len(pool_idx), max_pool, seed)]
    t_idx = _subsample(len(ev), max_test, seed)
    identity = dataset_identity(spec if name is None else f"{name}={spec}", test=None if directory else test,
                                gold_col=gold_col, text_col=text_col, seed=seed)
    name = identity["name"]
    return BenchData(
        name=name,
        task=task,
        corpus=_take(pool, pool_idx),
        test_texts=[ev.texts[i] for i in t_idx],
        test_gold=[ev.gold[i] for i in t_idx] if ev.gold is not None else [None] * len(t_idx),
        rows=pool_idx,
        directory=directory,
        recorded=sorted(directory.glob(RECORDED_GLOB)) if directory else [],
        identity=identity,
    )


@dataclass
class TeacherSetup:
    """A teacher ready for a benchmark, with the pool it runs on.

    ``answers`` holds the teacher's label for every pool row when it is known for free
    (simulated and recorded teachers); it is used only to *evaluate* (agreement, the
    full-pool ceiling), never to train a run. It is None for live teachers.
    """

    spec: str
    teacher: Teacher
    corpus: Corpus
    answers: list[str | None] | None


def _read_recording(path: Path) -> dict[str, list]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {c: [r[c] for r in rows] for c in (rows[0].keys() if rows else [])}


def make_bench_teacher(spec: str, data: BenchData, *, price_model: str = "gpt-4o-mini", seed: int = 0, **kw: Any) -> TeacherSetup:
    """``oracle`` | ``noisy:<rate>`` | ``recorded`` | any :func:`~thrifty.teachers.make_teacher` spec."""
    price = price_for(price_model, load_price_table())
    task, corpus = data.task, data.corpus
    gold = {text_sha256(t): g for t, g in zip(corpus.texts, corpus.gold or []) if g in set(task.labels)}
    kind, _, arg = spec.partition(":")
    if kind == "oracle":
        teacher: Teacher = OracleTeacher(task, gold, price=price)
    elif kind == "noisy":
        try:
            rate = float(arg)
        except ValueError:
            raise ThriftyError(f"Give the noise rate: noisy:0.2 (got {spec!r}).") from None
        teacher = NoisyTeacher(task, gold, rate, seed=seed, price=price)
    elif kind == "recorded":
        teacher, corpus = _recorded(data, price.prompt_per_1k, price.completion_per_1k)
    else:
        return TeacherSetup(spec, make_teacher(spec, task, corpus, **kw), corpus, None)
    answers = [a.label for a in teacher.label(corpus.texts)]
    return TeacherSetup(spec, teacher, corpus, answers)


def _recorded(data: BenchData, price_in: float, price_out: float) -> tuple[ReplayTeacher, Corpus]:
    """The dataset's recorded LLM: its teacher columns, else its ``teacher_*.csv`` (rows shown
    to the LLM as few-shot examples and rows never recorded are taken out of the pool)."""
    pk = {"price_in": price_in, "price_out": price_out}
    if "teacher_label" in data.corpus.extra:
        return ReplayTeacher.from_corpus_column(data.task, data.corpus, **pk), data.corpus
    if not data.recorded:
        raise ThriftyError(f"Dataset {data.name!r} has no recorded teacher (no teacher_label column, no {RECORDED_GLOB}).")
    path = data.recorded[0]
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    shots = {int(r) for r in meta.get("shot_rows", [])}
    rec = _read_recording(path)
    where = {int(r): j for j, r in enumerate(data.rows)}  # original pool row -> our corpus position
    keep_rows = [int(r) for r in rec["row"] if int(r) in where and int(r) not in shots]
    keep = np.asarray(sorted(where[r] for r in keep_rows), dtype=int)
    corpus = _take(data.corpus, keep)
    sel = [j for j, r in enumerate(rec["row"]) if int(r) in where and int(r) not in shots]
    table = {c: [v[j] for j in sel] for c, v in rec.items()}
    table["text"] = [data.corpus.texts[where[int(r)]] for r in table["row"]]
    del table["row"]
    name = "replay:" + str(meta.get("model_general_name") or meta.get("model") or path.stem)
    return ReplayTeacher.from_table(data.task, corpus, table, key="text", name=name, **pk), corpus
