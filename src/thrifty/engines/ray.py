"""``thrifty predict --engine ray`` and ``thrifty label --engine ray``: the same work on Ray Data.

``read_parquet`` / ``read_csv`` / ``read_json`` -> ``map_batches`` with a callable class
(the student is loaded once per actor, a fixed pool of actors) -> ``write_parquet``. Order is preserved
(``DataContext.execution_options.preserve_order``), and the per-batch work is
:func:`thrifty.predict.score` / :func:`thrifty.predict.result_table`, so labels are the
local engine's. Needs the ``ray`` extra (``pip install thrifty[ray]``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..corpus import column_names, detect_format, iter_batches
from ..errors import CorpusError, ThriftyError
from ..predict import DEFAULT_BATCH, PredictSummary, empty_mask, load_student, result_table, score, student_dir, texts_of


class StudentPredictor:
    """Ray Data callable class: loads the model in ``__init__`` (once per actor), scores Arrow batches."""

    def __init__(self, model_dir: str, text_col: str, id_col: str, probs: bool):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        self.model = load_student(model_dir)
        self.text_col, self.id_col, self.probs = text_col, id_col, probs

    def __call__(self, batch: pa.Table) -> pa.Table:
        pred, conf, proba = score(self.model, texts_of(batch.column(self.text_col)))
        return result_table(batch.column(self.id_col), self.id_col, self.model.labels, pred, conf,
                            proba if self.probs else None, empty=empty_mask(batch.column(self.text_col)))


class TierScorer:
    """Ray Data callable class: ``thrifty label``'s student tiers (fast, then accurate) on Arrow batches
    of ``pos``/``text``; the models are the job's own saved ones (the student or its ensemble), loaded once per actor."""

    def __init__(self, accurate_dir: str, fast_dir: str | None, fast_threshold: float):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        self.accurate = load_student(accurate_dir)
        self.fast = load_student(fast_dir) if fast_dir else None
        self.threshold = fast_threshold

    def __call__(self, batch: pa.Table) -> pa.Table:
        from ..labelling.tiers import score_chunk

        texts = batch.column("text").to_pylist()
        label, score_, kept, _, _ = score_chunk(texts, self.fast.predict_proba if self.fast else None, self.threshold,
                                                self.accurate.predict_proba)
        return pa.table({"pos": batch.column("pos"), "label": label, "score": score_, "kept": kept})


def label_tiers_ray(
    texts: list[str], idx: np.ndarray, accurate_dir: str | Path, fast_dir: str | Path | None, fast_threshold: float,
    *, address: str | None = None, concurrency: int | None = None, num_cpus: int | None = None, batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """``thrifty label --engine ray``: documents ``idx`` through the saved fast and accurate students as a Ray
    Data stage (a fixed pool of actors); the same ``(label, score, kept_by_fast, seconds)`` as the local
    :func:`thrifty.labelling.tiers.stream_tiers`, in the order of ``idx``."""
    try:
        import ray
    except ImportError as e:
        raise ThriftyError("--engine ray needs Ray: pip install 'thrifty[ray]'.") from e
    t0 = time.perf_counter()
    secs = {"fast_s": 0.0, "fast_docs": len(idx) if fast_dir else 0, "accurate_s": 0.0, "accurate_docs": 0, "ray_s": 0.0}
    if len(idx) == 0:
        return np.zeros(0, int), np.zeros(0), np.zeros(0, bool), secs
    _start(ray, address, num_cpus)
    actors, actor_cpus = _actor_pool(ray, concurrency)
    table = pa.table({"pos": pa.array(np.arange(len(idx))), "text": [texts[i] for i in idx]})
    blocks = [table.slice(i, batch_size) for i in range(0, len(idx), batch_size)]  # one block a batch: every actor works
    ds = ray.data.from_arrow(blocks).map_batches(
        TierScorer, fn_constructor_args=(str(accurate_dir), str(fast_dir) if fast_dir else None, float(fast_threshold)),
        batch_size=batch_size, batch_format="pyarrow", num_cpus=actor_cpus, compute=ray.data.ActorPoolStrategy(size=actors))
    out = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    order = np.argsort(out.column("pos").to_numpy())
    kept = out.column("kept").to_numpy(zero_copy_only=False)[order]
    secs["accurate_docs"] = int((~kept).sum())
    secs["ray_s"] = time.perf_counter() - t0
    return (out.column("label").to_numpy()[order], out.column("score").to_numpy()[order], kept, secs)


def _start(ray: Any, address: str | None, num_cpus: int | None) -> Any:
    """Connect to ``address`` (or a running Ray), else start a local one; the Data context, quiet and ordered."""
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    return ctx


def _actor_pool(ray: Any, concurrency: int | None) -> tuple[int, float]:
    """(actors, CPUs each): ``concurrency`` actors (default one per CPU) that together reserve all CPUs but
    one: the read and write tasks need a free CPU to be scheduled at all, or the pipeline deadlocks on
    small clusters."""
    n_cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)))
    actors = max(1, int(concurrency or n_cpus))
    return actors, min(1.0, max(0.05, (n_cpus - 1) / actors))


def _read(ray: Any, corpus: Path, columns: list[str]) -> Any:
    fmt = detect_format(corpus)
    if fmt == "parquet":
        return ray.data.read_parquet(str(corpus)).select_columns(columns)
    if fmt == "csv":
        import pyarrow.csv as pcsv

        return ray.data.read_csv(str(corpus), convert_options=pcsv.ConvertOptions(
            include_columns=columns, column_types={c: pa.string() for c in columns}, strings_can_be_null=False),
            parse_options=pcsv.ParseOptions(newlines_in_values=True))
    return ray.data.read_json(str(corpus), lines=True).select_columns(columns)


def _bytes_per_row(corpus: Path, text_col: str) -> float:
    """Mean in-memory bytes of a row's text, from the first batch of the corpus."""
    for batch in iter_batches(corpus, batch_size=2048, columns=[text_col]):
        return max(1.0, batch.nbytes / max(1, batch.num_rows))
    return 1.0


def predict_ray(
    run: str | Path,
    corpus: str | Path,
    out: str | Path,
    *,
    text_col: str = "text",
    id_col: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    probs: bool = False,
    address: str | None = None,
    concurrency: int | None = None,
    num_cpus: int | None = None,
) -> PredictSummary:
    """Classify ``corpus`` with Ray Data and write ``out`` as a directory of Parquet files (in input order).

    Connects to ``address`` if given, else to a running Ray, else starts a local one
    (``num_cpus`` of them). ``concurrency`` actors score batches (default: one per CPU of the
    cluster; together they reserve all CPUs but one, which the read and write tasks need).
    An ``id_col`` is required: row numbers are not defined across a sharded dataset.
    """
    try:
        import ray
    except ImportError as e:
        raise ThriftyError("--engine ray needs Ray: pip install 'thrifty[ray]'.") from e
    t0 = time.perf_counter()
    run, corpus, out = Path(run), Path(corpus), Path(out)
    model_dir = student_dir(run)
    if id_col is None:
        raise ThriftyError("--engine ray needs --id-col (a column of unique ids): rows are sharded across workers.")
    if not corpus.exists():
        raise CorpusError(f"Corpus file {corpus} does not exist.")
    names = column_names(corpus)
    missing = [c for c in (text_col, id_col) if c not in names]
    if missing:
        raise CorpusError(f"{corpus} has no column(s) {missing}; it has {names}. Use --text-col/--id-col.")
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise ThriftyError(f"{out} already exists; Ray writes a directory of Parquet files: choose a new --out.")
    ctx = _start(ray, address, num_cpus)
    # Blocks of about one batch: Ray spreads blocks, not rows, over the actors, and a whole
    # file read as one block would keep every actor but one idle.
    ctx.target_max_block_size = max(1 << 16, int(_bytes_per_row(corpus, text_col) * batch_size))
    actors, actor_cpus = _actor_pool(ray, concurrency)
    ds = _read(ray, corpus, list(dict.fromkeys([id_col, text_col])))
    ds = ds.map_batches(StudentPredictor, fn_constructor_args=(str(model_dir), text_col, id_col, probs),
                        batch_size=batch_size, batch_format="pyarrow", num_cpus=actor_cpus,
                        compute=ray.data.ActorPoolStrategy(size=actors))
    ds.write_parquet(str(out))
    secs = time.perf_counter() - t0
    import pyarrow.parquet as pq

    rows = int(pq.ParquetDataset(str(out)).read(columns=[id_col]).num_rows) if out.exists() else 0
    return PredictSummary(out=str(out), rows=rows, batches=int(np.ceil(rows / batch_size)), seconds=secs,
                          docs_per_s=rows / secs if secs > 0 else 0.0, engine="ray", workers=actors)
