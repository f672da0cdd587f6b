"""The benchmark grid: datasets x teachers x students x strategies x seeds, through the Distiller.

Every run is a normal :class:`~thrifty.loop.Distiller` run (teacher -> ledger -> student),
with the features fitted once per dataset and student and reused across runs. Each
finished run is cached as a small CSV under ``cache_dir`` keyed by its whole
configuration, so an interrupted grid resumes where it stopped and a report can be
regenerated without re-running anything.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..config import check_component, parse_spec, split_student
from ..errors import ConfigError, ThriftyError
from ..features import make_features
from ..loop import Distiller
from ..stopping import Budget
from ..strategies import STRATEGIES
from ..students import full_proba, make_student
from .datasets import BenchData, TeacherSetup, dataset_identity, load_dataset, make_bench_teacher
from .peers import register_peers

Log = Callable[[str], None]
def parse_strategy(spec: str) -> tuple[str, dict[str, Any]]:
    """``'mraru[exponent=1]'`` -> ``('mraru', {'exponent': 1})``, checked against the strategy's signature
    (the grammar of :mod:`thrifty.config`; small-text's peers registered first)."""
    register_peers()
    name, params = parse_spec(spec, "strategy")
    key = name.replace("-", "_").lower()
    problems = check_component("strategy", key, STRATEGIES, params)
    if problems:
        raise ConfigError(problems)
    return key, params


def parse_student(spec: str) -> tuple[str, dict[str, Any], str]:
    """``'tfidf[char=false]-lr'`` -> ``('tfidf', {'char': False}, 'lr')``."""
    feats, params, clf, _ = split_student(spec)
    return feats, params, clf


def default_strategies() -> list[str]:
    """Every registered strategy, small-text's peers included when installed."""
    register_peers()
    return sorted(STRATEGIES, key=lambda s: (s != "random", s))


@dataclass
class GridSpec:
    """What to run. ``val_size=0``: benchmarks measure on the gold test split, so every
    label paid goes to training and ``labels_total`` is the x-axis for every strategy.

    ``budget_per_class``: when set, each dataset's budget is that many labels per class
    (``budget`` is then ignored), so a 77-class set gets proportionally more than a binary one.
    ``test``: gold test files of file datasets (``{dataset spec: file}``); ``gold_col`` and
    ``text_col`` name the columns of file datasets."""

    datasets: list[str]
    strategies: list[str] = field(default_factory=default_strategies)
    students: list[str] = field(default_factory=lambda: ["tfidf-lr"])
    teachers: list[str] = field(default_factory=lambda: ["oracle"])
    seeds: int = 3
    budget: int = 1000
    batch: int = 50
    seed_size: int = 50
    val_size: int = 0
    max_pool: int | None = None
    max_test: int | None = None
    price_model: str = "gpt-4o-mini"
    budget_per_class: int | None = None
    test: dict[str, str] = field(default_factory=dict)
    gold_col: str = "label"
    text_col: str = "text"

    def budget_for(self, n_classes: int) -> int:
        """The label budget of a dataset with ``n_classes`` classes."""
        return int(self.budget_per_class * n_classes) if self.budget_per_class else int(self.budget)

    def identity(self, ds: str) -> dict[str, Any]:
        """The cache identity of dataset spec ``ds`` (content hashes for files)."""
        return dataset_identity(ds, test=self.test.get(ds), gold_col=self.gold_col, text_col=self.text_col)

    def load(self, ds: str) -> BenchData:
        return load_dataset(ds, test=self.test.get(ds), gold_col=self.gold_col, text_col=self.text_col,
                            max_pool=self.max_pool, max_test=self.max_test)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MemoFeatures:
    """A fitted feature extractor whose ``transform`` is memoised per list of texts.

    The grid fits features once per dataset and hands this to every Distiller run, which
    then transforms the same pool and test texts at no cost."""

    def __init__(self, extractor: Any):
        self.extractor = extractor
        self.name = getattr(extractor, "name", type(extractor).__name__)
        self._memo: dict[tuple[int, int], Any] = {}

    def fit(self, texts: Sequence[str]) -> "MemoFeatures":
        return self

    def transform(self, texts: Sequence[str]) -> Any:
        key = (len(texts), hash(tuple(texts)))
        if key not in self._memo:
            self._memo[key] = self.extractor.transform(list(texts))
        return self._memo[key]

    def save(self, directory: str | Path) -> None:
        self.extractor.save(directory)


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_")[-80:] or "dataset"


def _key(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def full_pool_accuracy(setup: TeacherSetup, data: BenchData, feats: MemoFeatures, clf: str) -> float | None:
    """Test accuracy of the student trained on every pool text with this teacher's labels."""
    if setup.answers is None:
        return None
    task = data.task
    valid = setup.corpus.valid_mask()
    idx = np.asarray([i for i, a in enumerate(setup.answers) if valid[i] and a is not None], dtype=int)
    y = np.asarray([task.index(setup.answers[i]) for i in idx], dtype=int)
    X = feats.transform(setup.corpus.texts)
    student = make_student(clf).fit(X[idx], y)
    pred = full_proba(student, feats.transform(data.test_texts), task.n_labels).argmax(1)
    gold = [task.labels.index(g) if g in task.labels else -1 for g in data.test_gold]
    keep = np.asarray(gold) >= 0
    return float(np.mean(pred[keep] == np.asarray(gold)[keep]))


def run_one(
    data: BenchData, setup: TeacherSetup, feats: MemoFeatures, student: str, strategy: str, seed: int, spec: GridSpec
) -> pd.DataFrame:
    """One Distiller run; one row per round with the benchmark columns added."""
    name, params = parse_strategy(strategy)
    answers = setup.answers
    truth = (
        np.asarray([data.task.index(a) if a is not None else -1 for a in answers], dtype=int) if answers is not None else None
    )
    d: Distiller

    def on_round(row: dict[str, Any]) -> None:
        if truth is None:
            row["pool_agreement"] = None
            return
        mask = truth >= 0
        mask[np.asarray(d.train_idx, dtype=int)] = False
        mask[np.asarray(d.val_idx, dtype=int)] = False
        rows = np.flatnonzero(mask)
        pred = full_proba(d.student_, d.X[rows], data.task.n_labels).argmax(1)
        row["pool_agreement"] = round(float(np.mean(pred == truth[rows])), 4) if len(rows) else None

    d = Distiller(
        data.task, setup.teacher, student=student, strategy=name, strategy_params=params,
        budget=Budget(labels=spec.budget_for(data.task.n_labels)), batch=spec.batch, seed_size=spec.seed_size, val_size=spec.val_size,
        random_state=seed, eval_texts=data.test_texts, eval_gold=data.test_gold, on_round=on_round, features=feats,
        ledger=":memory:",  # simulated teachers: nothing worth keeping
    )
    d.fit(setup.corpus)
    df = pd.DataFrame(d.history_)
    df.insert(0, "seed", seed)
    df.insert(0, "strategy", strategy)
    df.insert(0, "student", student)
    df.insert(0, "teacher", setup.spec)
    df.insert(0, "dataset", data.name)
    df["n_classes"] = data.task.n_labels
    return df


def run_grid(
    spec: GridSpec, cache_dir: str | Path = ".bench-cache", log: Log = print, fresh: bool = False, run_missing: bool = True
) -> pd.DataFrame:
    """Run (or load from the cache) every run of the grid; returns the tidy per-round table.

    BLAS/OpenMP are held to one thread: on a small shared machine oversubscribed thread
    pools made logistic regression ~5x slower. ``run_missing=False`` only collects what is
    cached (to rebuild a report from a partly finished grid)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        parts = list(_grid(spec, Path(cache_dir), log, fresh, run_missing))
    if not parts:
        raise ThriftyError("No runs: give at least one dataset, teacher, student, strategy and seed (or run the grid first).")
    rounds = pd.concat(parts, ignore_index=True)
    return rounds[[c for c in ROUND_COLUMNS if c in rounds.columns]]


def _grid(spec: GridSpec, cache: Path, log: Log, fresh: bool, run_missing: bool):
    """Seeds outermost: a grid stopped early still covers every dataset with fewer seeds."""
    n_runs = len(spec.datasets) * len(spec.teachers) * len(spec.students) * len(spec.strategies) * spec.seeds
    done = 0
    t_grid = time.perf_counter()
    skip = ("datasets", "strategies", "students", "teachers", "seeds", "test", "gold_col", "text_col")
    base = {k: v for k, v in spec.to_dict().items() if k not in skip and not (k == "budget_per_class" and v is None)}
    idents = {ds: spec.identity(ds) for ds in spec.datasets}
    datas: dict[str, BenchData] = {}
    featss: dict[tuple[str, str], MemoFeatures] = {}
    setups: dict[tuple[str, str, str], tuple[TeacherSetup, float | None] | None] = {}
    for seed in range(spec.seeds):
        for ds in spec.datasets:
            for student in spec.students:
                for tspec in spec.teachers:
                    for strategy in spec.strategies:
                        rkey = _key({"dataset": idents[ds], "teacher": tspec, "student": student, "strategy": strategy, "seed": seed, **base})
                        rpath = cache / "runs" / _slug(idents[ds]["name"]) / f"{rkey}.csv"
                        done += 1
                        if rpath.exists() and not fresh:
                            yield pd.read_csv(rpath)
                            continue
                        if not run_missing:
                            continue
                        if ds not in datas:
                            datas[ds] = spec.load(ds)
                        data = datas[ds]
                        if (ds, student) not in featss:
                            name, params, _ = parse_student(student)
                            t0 = time.perf_counter()
                            featss[ds, student] = MemoFeatures(make_features(name, **params).fit(data.corpus.texts))
                            featss[ds, student].transform(data.corpus.texts)
                            log(f"[{data.name}] features {student} fitted in {time.perf_counter() - t0:.1f}s")
                        feats = featss[ds, student]
                        if (ds, student, tspec) not in setups:
                            setups[ds, student, tspec] = _setup(data, tspec, student, feats, spec, cache, base, fresh, log)
                        if setups[ds, student, tspec] is None:
                            continue
                        setup, full = setups[ds, student, tspec]
                        t0 = time.perf_counter()
                        df = run_one(data, setup, feats, student, strategy, seed, spec)
                        df["full_pool_accuracy"] = full
                        rpath.parent.mkdir(parents=True, exist_ok=True)
                        df.to_csv(rpath, index=False)
                        last = df.iloc[-1]
                        log(
                            f"[{done}/{n_runs}] {data.name} {tspec} {student} {strategy} seed {seed}: "
                            f"acc {last['test_accuracy']} at {int(last['labels_total'])} labels "
                            f"({time.perf_counter() - t0:.1f}s, grid {time.perf_counter() - t_grid:.0f}s)"
                        )
                        yield df


def _setup(data: BenchData, tspec: str, student: str, feats: MemoFeatures, spec: GridSpec, cache: Path,
           base: dict[str, Any], fresh: bool, log: Log) -> tuple[TeacherSetup, float | None] | None:
    """The teacher and its full-pool ceiling (cached); None when a dataset has no recording."""
    try:
        setup = make_bench_teacher(tspec, data, price_model=spec.price_model)
    except ThriftyError as e:
        if tspec == "recorded":
            log(f"[{data.name}] skipping teacher 'recorded': {e}")
            return None
        raise
    fpath = cache / "full" / f"{_key({'full': True, 'dataset': data.identity, 'teacher': tspec, 'student': student, **base})}.json"
    if fpath.exists() and not fresh:
        full = json.loads(fpath.read_text())["accuracy"]
    else:
        full = full_pool_accuracy(setup, data, feats, parse_student(student)[2])
        fpath.parent.mkdir(parents=True, exist_ok=True)
        fpath.write_text(json.dumps({"accuracy": full}))
    log(f"[{data.name}] teacher {tspec}: pool {len(setup.corpus):,}, full-pool student accuracy {full}")
    return setup, full


ROUND_COLUMNS = [
    "dataset", "teacher", "student", "strategy", "seed", "round", "labels", "labels_total", "abstained",
    "prompt_tokens", "completion_tokens", "dollars", "select_s", "scored", "fit_s", "test_accuracy",
    "pool_gold_accuracy", "pool_agreement", "val_agreement", "full_pool_accuracy", "n_classes",
]

